"""`openhelix compare`: every system file of configs/systems/ at tiny size, trained for a few steps on the
same generated data and evaluated through the graph (bridge, System 2, System 1, evaluator as processes)
on the same seeded episode; the report; resume; a system that cannot be trained fails by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openhelix_training.systems import SYSTEM_NAMES, available_systems

OPENHELIX = str(Path(sys.executable).with_name("openhelix"))
COMMON = ["--size", "tiny", "--steps", "2", "--pretrain-steps", "2", "--batch-size", "4", "--episodes", "1",
          "--tasks", "open_drawer", "--episode-length", "15"]


def compare(out: Path, systems: str, timeout: float = 560) -> subprocess.CompletedProcess:
    return subprocess.run([OPENHELIX, "compare", "--systems", systems, "--out", str(out), *COMMON],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # seven trainings and seven graphs: about 100-150 s here
@pytest.mark.timeout(600)
def test_every_system_file_trains_and_runs_through_the_graph(tmp_path):
    assert available_systems() == sorted(SYSTEM_NAMES)
    out = tmp_path / "cmp"
    result = compare(out, ",".join(SYSTEM_NAMES))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    state = json.loads((out / "compare.json").read_text())
    for name in SYSTEM_NAMES:
        record = state["systems"][name]
        expected = {"train": "done", "evaluate": "done"}
        if name in ("openhelix", "lcb"):  # policy from pre-trained: its own stage, shared by the two
            expected["pretrain"] = "done"
        assert record["stages"] == expected, (name, record["stages"])
        summary = record["summary"]
        assert summary["status"] == "completed" and summary["episodes"] == 1, (name, summary)
        assert summary["system1"]["messages"] > 0 and summary["system2"]["messages"] > 0, (name, summary)
        # the published GoalLatents as the evaluator (another process) read them: tokens x width + coarse
        shapes = summary["latent_shapes"]
        assert shapes, f"{name}: no GoalLatent shape recorded"
        parsed = [tuple(int(x) for x in key.replace("+", "x").split("x")) for key in shapes]
        if name == "robodual":
            assert all(tokens > 1 and width == 32 and coarse == 8 for tokens, width, coarse in parsed), shapes
        elif name == "dp-vla":  # every token of the user turn: the 16 patches and the language
            assert all(tokens > 16 and width == 32 and coarse == 0 for tokens, width, coarse in parsed), shapes
        else:
            assert parsed == [(1, 32, 0)], (name, shapes)
    pretrained = {name: state["systems"][name]["pretrained"] for name in SYSTEM_NAMES}
    assert pretrained["lcb"] == pretrained["openhelix"] != "", "the two pre-trained systems share one policy"
    assert all(pretrained[name] == "" for name in SYSTEM_NAMES if name not in ("openhelix", "lcb"))
    report = (out / "compare.md").read_text()
    for name in SYSTEM_NAMES:
        assert f"| {name} |" in report
    assert "0/1 (0 %) | 0-79 %" in report or "1/1 (100 %) | 21-100 %" in report
    assert "does not separate the systems" in report
    assert (out / "compare.png").stat().st_size > 1000
    # system 1's settings reached the node: RoboDual's temporal ensemble
    system1_log = (out / "robodual" / "eval" / "logs" / "system1.log").read_text()
    assert "temporal ensemble of 8 plans" in system1_log and "8 coarse actions" in system1_log
    # Run again: every stage is done, nothing runs, the same report.
    again = compare(out, ",".join(SYSTEM_NAMES), timeout=60)
    assert again.returncode == 0 and "0stage" in again.stdout.replace(" ", ""), again.stdout[-2000:]


def test_a_system_that_cannot_train_fails_by_name_and_the_others_go_on(tmp_path):
    bad = tmp_path / "mismatch.yaml"
    bad.write_text("name: mismatch\n"
                   "system2: {preset: embedded, overrides: {latent: {act: true}}}\n"
                   "system1: {preset: default, overrides: {scene_encoder: points, latent_layout: tokens, "
                   "coarse_actions: 4}}\n")
    out = tmp_path / "cmp"
    result = compare(out, str(bad), timeout=120)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    state = json.loads((out / "compare.json").read_text())
    record = state["systems"][str(bad)]
    assert record["stages"]["train"].startswith("failed: training: ValueError: System 1 conditions on 4 coarse "
                                                "actions but System 2 sends 0"), record
    assert "evaluate" not in record["stages"] and record["summary"] == {}
    assert "**failed: training" in (out / "compare.md").read_text()
    # other settings in the same folder are refused rather than mixed in
    other = subprocess.run([OPENHELIX, "compare", "--systems", str(bad), "--out", str(out), *COMMON[:-2],
                            "--episode-length", "30"], capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and "other settings (episode_length: 15 there, 30 now)" in other.stderr
    # an edited system file is another comparison too
    bad.write_text(bad.read_text().replace("coarse_actions: 4", "coarse_actions: 2"))
    edited = compare(out, str(bad), timeout=60)
    assert edited.returncode == 2 and "system_files:" in edited.stderr, edited.stderr[-2000:]
