"""3D Diffuser Actor on the graph: a release-format policy file (the tiny miniature, with the released
tensor names, reading one <ACT> latent as OpenHelix's policy.pth does) imported with the project's
importer, beside a System 2 of 512-D latents, drives the embedded bridge in lockstep. System 1 plans from
each camera's organised cloud (camera/static/points, camera/gripper/points), which the bridge builds only
while someone listens."""

from __future__ import annotations

import json
import time

import pytest
import torch
from support.processes import Processes

from openhelix_ros.common.timing import latent_step_for_plan

STEP_NS = 1_000_000_000 / 30


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
    shared = ("clock_mode:=lockstep", "latent_period_steps:=3", "torch_threads:=1",
              f"checkpoint:={imported_checkpoint}")
    system2 = processes.node("system2", *shared)
    system1 = processes.node("system1", *shared)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all("ready" in node.output() for node in (system1, system2)):
        time.sleep(0.2)
    bridge = processes.node("calvin_bridge", "backend:=embedded", "clock_mode:=lockstep")
    out = tmp_path / "observed.json"
    observer = processes.peer("lockstep_observer.py", "--out", str(out), "--trajectories", "10", ready=None)
    code = observer.wait(timeout=150)
    text = {node.label: node.output() for node in (system1, system2, bridge)}
    assert code == 0, f"{observer.output()}\n{text}"
    for node in (bridge, system1, system2):
        node.stop()
    assert "openhelix_diffuser_actor" in text["system1"] or str(imported_checkpoint) in text["system1"]
    data = json.loads(out.read_text())
    latent_step = {int(sequence): round(stamp / STEP_NS) for sequence, stamp in data["latents"].items()}
    steps = []
    for trajectory in data["trajectories"]:
        step = round(trajectory["stamp"] / STEP_NS)
        steps.append(step)
        assert latent_step[trajectory["latent_sequence"]] == latent_step_for_plan(step, 3), (step, trajectory)
        assert trajectory["poses"] == 6  # the miniature's trajectory length; nothing dropped
    assert steps == list(range(len(steps)))  # one plan per step: the world waited for each
    assert "dropped" not in text["system1"], text["system1"]
    assert "holding the pose" not in text["calvin_bridge"], text["calvin_bridge"]
