"""`openhelix latent-probe` end to end on the embedded simulator with the tiny System 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OPENHELIX = str(Path(sys.executable).with_name("openhelix"))


def test_latent_probe_writes_its_report(tmp_path):
    out = tmp_path / "probe"
    result = subprocess.run([OPENHELIX, "latent-probe", "--model", "tiny", "--frames", "3", "--every", "10",
                             "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "lift_blue_block_table" and results["dynamic"] == "left"
    steps = [frame["step"] for frame in results["frames"]]
    assert steps == [0, 10, 20]
    # CALVIN-D "left" moves the block along -x while the arm holds still
    xs = [frame["block_position"][0] for frame in results["frames"]]
    assert xs[0] > xs[1] > xs[2]
    assert set(results["sensitivity"]) >= {"scene_distance", "instruction_distance", "scene_to_instruction_ratio"}
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ratio" in (out / "report.md").read_text()


def test_latent_probe_rejects_a_task_whose_block_does_not_move(tmp_path):
    result = subprocess.run([OPENHELIX, "latent-probe", "--model", "tiny", "--task", "open_drawer",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "not grasp-related" in result.stderr
