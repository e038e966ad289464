"""The released models on the graph: release-format files (the miniatures, with the released tensor
names) imported with the project's importers drive the embedded bridge in lockstep: a 3D Diffuser Actor
policy reading one <ACT> latent as OpenHelix's policy.pth does, beside the project's tiny System 2, and the
OpenHelix pair (tiny-openhelix's LISA/LLaVA-v1 layout as System 2 with that policy). System 1 plans from
each camera's organised cloud (camera/static/points, camera/gripper/points), which the bridge builds only
while someone listens."""

from __future__ import annotations

import pytest
import torch
from support.graphs import run_lockstep_dual_graph
from support.processes import Processes
from support.release import imported_policy


@pytest.fixture(scope="module")
def imported_checkpoint(tmp_path_factory):
    from openhelix_training import System2

    root = tmp_path_factory.mktemp("imported")
    checkpoint = root / "checkpoint"
    imported_policy(root, checkpoint / "system1", 512)
    System2.from_config("tiny", latent_dim=512).save_pretrained(checkpoint / "system2")
    return checkpoint


@pytest.fixture(scope="module")
def imported_openhelix(tmp_path_factory):
    """Both released systems at toy widths: a pytorch_model.bin with the release's names (peft prefix and
    transformers 4.31's rotary buffers included) through import_openhelix_mllm, and the policy."""
    from openhelix_training import OpenHelixSystem2
    from openhelix_training.modeling_openhelix import import_openhelix_mllm

    root = tmp_path_factory.mktemp("openhelix")
    torch.manual_seed(1)
    mllm = OpenHelixSystem2.from_config("tiny-openhelix")
    weights = {"base_model.model." + k: v for k, v in mllm.state_dict().items()}
    head_dim = mllm.config.text["hidden_size"] // mllm.config.text["num_attention_heads"]
    for i in range(mllm.config.text["num_hidden_layers"]):
        weights[f"base_model.model.model.layers.{i}.self_attn.rotary_emb.inv_freq"] = (
            1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim)))
    torch.save(weights, root / "pytorch_model.bin")
    checkpoint = root / "checkpoint"
    import_openhelix_mllm(root / "pytorch_model.bin", None, checkpoint / "system2", preset="tiny-openhelix")
    imported_policy(root, checkpoint / "system1", mllm.config.latent_dim)
    return checkpoint


@pytest.mark.slow  # the embedded simulator, System 2 and System 1 as three processes
def test_an_imported_release_policy_drives_the_graph_in_lockstep(imported_checkpoint, tmp_path, processes: Processes):
    data, text = run_lockstep_dual_graph(processes, tmp_path / "observed.json",
                                         ["torch_threads:=1", f"checkpoint:={imported_checkpoint}"], 10)
    assert str(imported_checkpoint) in text["system1"]
    # the miniature's trajectory length: 3D Diffuser Actor's predictions start after the current pose
    assert all(trajectory["poses"] == 6 for trajectory in data["trajectories"])
    assert "dropped" not in text["system1"], text["system1"]


@pytest.mark.slow
def test_the_imported_openhelix_pair_drives_the_graph_in_lockstep(imported_openhelix, tmp_path, processes: Processes):
    data, text = run_lockstep_dual_graph(processes, tmp_path / "observed.json",
                                         ["torch_threads:=1", f"checkpoint:={imported_openhelix}"], 8)
    assert str(imported_openhelix) in text["system2"] and str(imported_openhelix) in text["system1"]
    assert all(trajectory["poses"] == 6 for trajectory in data["trajectories"])
    assert "dropped" not in text["system1"], text["system1"]
