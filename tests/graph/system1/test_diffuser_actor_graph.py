"""3D Diffuser Actor on the graph: a release-format policy file (the tiny miniature, with the released
tensor names, reading one <ACT> latent as OpenHelix's policy.pth does) imported with the project's
importer, beside a System 2 of 512-D latents, drives the embedded bridge in lockstep. System 1 plans from
each camera's organised cloud (camera/static/points, camera/gripper/points), which the bridge builds only
while someone listens."""

from __future__ import annotations

import pytest
import torch
from support.graphs import run_lockstep_dual_graph
from support.processes import Processes


@pytest.fixture(scope="module")
def imported_checkpoint(tmp_path_factory):
    from openhelix_training import DiffuserActor, System2
    from openhelix_training.configuration_diffuser_actor import DiffuserActorConfig
    from openhelix_training.import_checkpoint import import_release_policy

    root = tmp_path_factory.mktemp("imported")
    tiny = DiffuserActorConfig.preset("tiny-3dda")
    widths = {f: getattr(tiny, f) for f in ("embedding_dim", "num_attn_heads", "backbone_width", "backbone_heads",
                                            "backbone_output_dim", "backbone_input_resolution", "camera_resolution",
                                            "crop", "trajectory_length", "diffusion_timesteps", "num_inference_steps")}
    torch.manual_seed(0)
    policy = DiffuserActor.from_config("tiny-3dda", instruction_length=1)
    weights = {"module." + k: v for k, v in policy.state_dict().items()}
    torch.save({"weight": weights, "optimizer": {}, "iter": 1, "best_loss": None}, root / "policy.pth")
    checkpoint = root / "checkpoint"
    import_release_policy(root / "policy.pth", checkpoint / "system1", "openhelix-policy", **widths)
    System2.from_config("tiny", latent_dim=512).save_pretrained(checkpoint / "system2")
    return checkpoint


@pytest.mark.slow  # the embedded simulator, System 2 and System 1 as three processes
def test_an_imported_release_policy_drives_the_graph_in_lockstep(imported_checkpoint, tmp_path, processes: Processes):
    data, text = run_lockstep_dual_graph(processes, tmp_path / "observed.json",
                                         ["torch_threads:=1", f"checkpoint:={imported_checkpoint}"], 10)
    assert str(imported_checkpoint) in text["system1"]
    # the miniature's trajectory length: 3D Diffuser Actor's predictions start after the current pose
    assert all(trajectory["poses"] == 6 for trajectory in data["trajectories"])
    assert "dropped" not in text["system1"], text["system1"]
