"""`openhelix demo`: the whole graph in separate processes (bridge, System 2, System 1, evaluator) over
DDS, one short chain, the report. Tiny models keep it quick; `make demo` runs the real configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

OPENHELIX = str(Path(sys.executable).with_name("openhelix"))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_runs_the_dual_system_graph_and_writes_the_report(tmp_path):
    result = subprocess.run(
        [OPENHELIX, "demo", "--system2-model", "tiny", "--system1-model", "tiny", "--checkpoint", "none",
         "--chains", "1", "--episode-length", "12", "--latent-period-steps", "4", "--name", "t",
         "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=380)
    run_dir = tmp_path / "t"
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((run_dir / "logs").glob("*.log")))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs

    demo = json.loads((run_dir / "demo.json").read_text())
    assert demo["policy"] == "dual" and demo["checkpoint"] is None
    assert "untrained" in demo["checkpoint_note"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["num_sequences_done"] == 1
    assert len(results["success_rates"]) == 5
    assert (run_dir / "report.md").is_file()
    assert list(run_dir.glob("*.png")), "the evaluator's plots are missing"
    # System 1 really planned: the bridge executed trajectories rather than holding for lack of plans
    bridge_log = (run_dir / "logs" / "calvin_bridge.log").read_text()
    assert "holding the pose" not in bridge_log, bridge_log[-2000:]


def test_demo_refuses_a_missing_checkpoint(tmp_path):
    result = subprocess.run([OPENHELIX, "demo", "--checkpoint", str(tmp_path / "nope"), "--runs-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "does not exist" in result.stderr


def _training_output(root: Path, name: str, data_kind: str) -> Path:
    output = root / name
    step = output / "checkpoints" / "step_0000010"
    step.mkdir(parents=True)
    (output / "checkpoints" / "latest").write_text("step_0000010")
    (step / "training_state.json").write_text(json.dumps({"step": 10, "train_config": {"data": {"kind": data_kind}}}))
    return output


def test_demo_picks_the_newest_checkpoint_trained_on_demonstrations(tmp_path):
    import os

    from openhelix_ros.cli.demo import choose_checkpoint

    runs, shipped = tmp_path / "runs", tmp_path / "checkpoints"
    runs.mkdir()
    assert choose_checkpoint("auto", runs, shipped)[0] == ""
    _training_output(runs, "smoke", "synthetic")
    path, note = choose_checkpoint("auto", runs, shipped)
    assert path == "" and "untrained" in note, "a run on synthetic data is no policy"
    # a checkpoint committed under checkpoints/ (system1/, system2/, training_state.json)
    committed = shipped / "easy"
    for part in ("system1", "system2"):
        (committed / part).mkdir(parents=True)
    (committed / "training_state.json").write_text(json.dumps({"train_config": {"data": {"kind": "rosbag"}}}))
    os.utime(committed / "training_state.json", (1e9, 1e9))
    path, note = choose_checkpoint("auto", runs, shipped)
    assert path == str(committed.resolve()) and "checkpoints/" in note
    # a run trained here afterwards is newer than the clone's files
    bags = _training_output(runs, "from-bags", "rosbag")
    assert choose_checkpoint("auto", runs, shipped)[0] == str(bags.resolve())
    assert choose_checkpoint("none", runs, shipped)[0] == ""


def test_demo_evaluates_a_few_task_policy_on_its_tasks(tmp_path):
    from openhelix_ros.cli.demo import checkpoint_tasks, evaluation_tasks
    from openhelix_ros.sim.tasks import TASKS

    few = tmp_path / "few"
    few.mkdir()
    (few / "training_state.json").write_text(json.dumps({"data_tasks": ["open_drawer", "turn_on_led"]}))
    everything = tmp_path / "all"
    everything.mkdir()
    (everything / "training_state.json").write_text(json.dumps({"data_tasks": list(TASKS)}))
    old = tmp_path / "old"  # written before the trainer recorded its tasks
    old.mkdir()
    (old / "training_state.json").write_text(json.dumps({"step": 3}))

    assert checkpoint_tasks(str(few)) == ["open_drawer", "turn_on_led"]
    assert checkpoint_tasks(str(old)) == [] and checkpoint_tasks("") == []
    assert evaluation_tasks("", str(few)) == (["open_drawer", "turn_on_led"], "the tasks the checkpoint was trained on")
    assert evaluation_tasks("", str(everything))[0] == []  # a policy of all 34 tasks: CALVIN's chains
    assert evaluation_tasks("", str(old))[0] == [] and evaluation_tasks("", "")[0] == []
    assert evaluation_tasks("all", str(few))[0] == []
    assert evaluation_tasks("close_drawer, lift_red_block_table", str(few))[0] == ["close_drawer",
                                                                                  "lift_red_block_table"]
