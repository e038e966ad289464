"""A corrupt, truncated or wrong-architecture checkpoint stops a policy node at load with one clear line
that names the file and what is wrong with it, and exit status 2 (a configuration error: a launch
``respawn`` retrying it would only fail again), never a traceback and never a node that comes up
with weights it did not load. Each case damages a copy of the shipped checkpoint (checkpoints/easy6).

Four cases run as node processes (a node start costs about 10 s of CI); the others differ only in which
file is damaged and go through the same loader, so they are checked in the test process, through the
function the nodes call (System1Core.load / System2Core.load)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[3] / "checkpoints" / "easy6"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy or a download cut off half way


def overwrite(path: Path) -> None:
    path.write_bytes(b"\x00" * 4096)  # a disk error, or some other file under the name


def edit_config(path: Path, block: str, key: str, value) -> None:
    config = json.loads(path.read_text())
    config[block][key] = value
    path.write_text(json.dumps(config))


def damage(root: Path, case: str) -> Path:
    """A damaged copy of the shipped checkpoint; returns what to give the node as ``checkpoint``."""
    copy = root / "checkpoint"
    shutil.copytree(SHIPPED, copy)
    if case == "system1 truncated":
        truncate(copy / "system1" / "model.safetensors")
    elif case == "system1 overwritten":
        overwrite(copy / "system1" / "model.safetensors")
    elif case == "system1 other architecture":
        edit_config(copy / "system1" / "config.json", "system1", "embed_dim", 64)
    elif case == "system1 given System 2":
        return copy / "system2"
    elif case == "system2 truncated":
        truncate(copy / "system2" / "model.safetensors")
    elif case == "system2 other architecture":
        edit_config(copy / "system2" / "config.json", "system2", "latent_dim", 256)
    elif case == "system2 given System 1":
        return copy / "system1"
    elif case == "system2 unknown model type":
        config = json.loads((copy / "system2" / "config.json").read_text())
        config["model_type"] = "some_other_vla"
        (copy / "system2" / "config.json").write_text(json.dumps(config))
        return copy / "system2"
    else:
        raise AssertionError(case)
    return copy


CASES = {
    "system1 truncated": ["model.safetensors: corrupt or unreadable safetensors file", "incomplete metadata"],
    "system1 overwritten": ["model.safetensors: corrupt or unreadable safetensors file"],
    "system1 other architecture": ["does not match the model configuration",
                                   "traj_in.weight: checkpoint (128, 9) vs model (64, 9)"],
    "system1 given System 2": ["holds no System 1 (it is a System 2 checkpoint)"],
    "system2 truncated": ["model.safetensors: corrupt or unreadable safetensors file"],
    "system2 other architecture": ["does not match the model configuration",
                                   "projector.weight: checkpoint (512, 576) vs model (256, 576)"],
    "system2 given System 1": ["holds no System 2 (it is a System 1 checkpoint)"],
    "system2 unknown model type": ["config.json: unknown model_type 'some_other_vla' (known: openhelix_system1"],
}


ACROSS_PROCESSES = ("system1 truncated", "system1 other architecture", "system2 given System 1",
                    "system2 unknown model type")


@pytest.mark.parametrize("case", ACROSS_PROCESSES)
def test_a_damaged_checkpoint_stops_the_node_at_load_naming_what_is_wrong(tmp_path, case):
    node = case.split()[0]
    checkpoint = damage(tmp_path, case)
    script = Path(sys.executable).parent / node
    result = subprocess.run([str(script), "--ros-args", "-p", f"checkpoint:={checkpoint}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    fatal = [line for line in result.stderr.splitlines() if "[FATAL] cannot start" in line]
    assert fatal, result.stderr[-3000:]
    assert str(tmp_path) in fatal[0], fatal[0]  # the path of what failed
    for expected in CASES[case]:
        assert expected in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"{node} ready" not in result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(set(CASES) - set(ACROSS_PROCESSES)))
def test_the_other_damaged_checkpoints_are_refused_by_the_loader_the_nodes_call(tmp_path, case):
    from openhelix_ros.system1.core import System1Core
    from openhelix_ros.system2.core import System2Core
    from openhelix_training.checkpoint import CheckpointError

    node = case.split()[0]
    checkpoint = damage(tmp_path, case)
    load = System1Core.load if node == "system1" else System2Core.load
    with pytest.raises((ValueError, CheckpointError)) as error:  # the two the nodes turn into "cannot start"
        load(checkpoint=str(checkpoint))
    assert str(tmp_path) in str(error.value)
    for expected in CASES[case]:
        assert expected in str(error.value), str(error.value)
