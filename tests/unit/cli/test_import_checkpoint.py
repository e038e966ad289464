"""``openhelix import-checkpoint``: a release-format file in, a model directory out that System 1 loads;
a file that does not fit is refused naming the tensors, and nothing is written."""

from __future__ import annotations

import torch

from openhelix_ros.cli.main import main
from openhelix_ros.system1.core import System1Core
from openhelix_training import DiffuserActor


def release_file(path, model):
    torch.save({"weight": {"module." + k: v for k, v in model.state_dict().items()}, "optimizer": {},
                "iter": 10, "best_loss": 0.5}, path)
    return path


def test_a_release_file_becomes_a_checkpoint_system1_loads(tmp_path, capsys):
    torch.manual_seed(0)
    # the released widths: the command builds the released presets
    model = DiffuserActor.from_config("3dda", nhist=3)
    path = release_file(tmp_path / "diffuser_actor_calvin.pth", model)
    out = tmp_path / "imported"
    assert main(["import-checkpoint", "3dda", str(path), "--out", str(out), "--ddim-steps", "5"]) == 0
    text = capsys.readouterr().out
    assert "661 tensors loaded strictly; nhist 3, 16 instruction token(s)" in text and "ddim x 5" in text
    core = System1Core.load(checkpoint=str(out))
    assert core.reads_cameras and core.latent_dim == 16 * 512 and core.num_inference_steps == 5
    for name, tensor in core.model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert main(["import-checkpoint", "3dda", str(path), "--out", str(out)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_a_file_that_does_not_fit_is_refused_and_nothing_is_written(tmp_path, capsys):
    torch.manual_seed(0)
    model = DiffuserActor.from_config("tiny-3dda")  # toy widths: not the released shapes
    path = release_file(tmp_path / "policy.pth", model)
    out = tmp_path / "imported"
    assert main(["import-checkpoint", "openhelix-policy", str(path), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "different shape" in error and "encoder.backbone.conv1.weight: checkpoint (4, 3, 3, 3) vs model (32, 3, 3, 3)" in error
    assert "more" in error  # the list is long: the first 200, then how many more
    assert not out.exists()


def test_the_openhelix_pair_needs_its_mllm(tmp_path, capsys):
    assert main(["import-checkpoint", "openhelix", str(tmp_path / "policy.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "--llm is required" in capsys.readouterr().err
