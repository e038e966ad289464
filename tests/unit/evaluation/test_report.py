"""The evaluation report writer on synthetic runs: files exist, results.json round-trips, the numbers in
report.md are the run's, and the PNGs are real images with content."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mpimg

from openhelix_ros.evaluation.core import (
    CheckTasks,
    EvaluationConfig,
    EvaluationRun,
    ResetScene,
    TimingCollector,
)
from openhelix_ros.evaluation.report import (
    PLOTS,
    build_results,
    load_results,
    markdown_report,
    rates_table,
    write_report,
)


def synthetic_run(num: int = 10, succeed_first: int = 3, cancel_after: int | None = None) -> EvaluationRun:
    """Chain i completes i % (succeed_first + 1) subtasks (each in 2 steps); the rest time out at 4."""
    run = EvaluationRun(EvaluationConfig(num_sequences=num, variant="enriched", seed=5, episode_length=4))
    commands, now = run.start(0.0), 0.0
    while not run.finished:
        if cancel_after is not None and len(run.records) == cancel_after:
            run.cancel(now)
            break
        command = commands.pop(0) if commands else None
        now += 0.01
        if isinstance(command, ResetScene):
            step, start, target = 0, 0, command.chain_index % (succeed_first + 1)
            commands += run.on_reset_done(now, True, "s", step=0)
        elif isinstance(command, CheckTasks):
            done = len(run.current.subtasks) <= target and step - start >= 2
            commands += run.on_check_result(now, True, command.tasks if done else [], "s", step)
            if done:
                start = step
        elif command is None:
            step += 1
            commands += run.on_scene_state(now, step)
    return run


def synthetic_timing() -> TimingCollector:
    timing = TimingCollector()
    rng = np.random.default_rng(0)
    for k in range(40):
        timing.on_goal_latent(k * 0.3, k + 1, int(k * 10 / 30 * 1e9), float(rng.uniform(0.2, 0.4)))
    for step in range(10, 400):
        timing.on_trajectory(step / 30, int(step / 30 * 1e9), step // 10, float(rng.uniform(0.01, 0.03)))
    return timing


def test_report_files_round_trip_and_plots(tmp_path):
    run = synthetic_run()
    completed = [r.completed for r in run.records]
    assert completed == [i % 4 for i in range(10)]
    results = build_results(run, synthetic_timing(), run_name="synthetic", started=1_000_000.0,
                            finished=1_000_042.0, parameters={"bridge_name": "calvin_bridge", "latent_period_steps": 10})
    paths = write_report(results, tmp_path / "runs" / "synthetic")

    assert set(paths) == {"results", "report", *PLOTS}
    loaded = load_results(tmp_path / "runs" / "synthetic")
    assert loaded == json.loads(json.dumps(results))
    assert loaded["status"] == "completed" and loaded["num_sequences_done"] == 10
    assert loaded["average_length"] == pytest.approx(np.mean(completed))
    assert loaded["success_rates"] == pytest.approx([np.mean([c >= k for c in completed]) for k in range(1, 6)])
    assert loaded["elapsed_s"] == 42.0 and loaded["config"]["bridge_name"] == "calvin_bridge"
    assert loaded["variant"] == "enriched" and loaded["seed"] == 5
    assert loaded["chains"][2]["tasks"] == run.chains[2][1] and loaded["chains"][2]["completed"] == 2
    assert loaded["chains"][2]["subtasks"][2]["failure"] == "not completed within 4 steps"
    assert loaded["failures"] == {"not completed within 4 steps": 10}
    assert loaded["timing"]["latent_age_steps"]["min"] == 10 and loaded["timing"]["latent_age_steps"]["max"] == 19
    assert loaded["versions"]["python"] and "numpy" in loaded["versions"]
    assert loaded["git_revision"] is None or len(loaded["git_revision"].split("+")[0]) == 40

    report = paths["report"].read_text()
    assert "| 10 | 70.0% | 40.0% | 20.0% | 0.0% | 0.0% | 1.30 |" in report
    for name in PLOTS.values():
        assert f"]({name})" in report
    for key in PLOTS:
        picture = mpimg.imread(paths[key])
        assert picture.ndim == 3 and picture.shape[0] > 200 and picture.shape[1] > 300
        # Non-trivial: many distinct colours, not a blank canvas.
        colours = np.unique(picture.reshape(-1, picture.shape[2]).round(2), axis=0)
        assert len(colours) > 20, key


def test_cancelled_run_and_empty_timing_still_write_a_report(tmp_path):
    run = synthetic_run(num=10, cancel_after=3)
    results = build_results(run, TimingCollector(), run_name="partial", started=0.0, finished=1.0,
                            message="cancelled by the client")
    paths = write_report(results, tmp_path / "partial")
    loaded = load_results(paths["results"])
    assert loaded["status"] == "cancelled" and loaded["num_sequences_done"] == 3
    assert loaded["interrupted_chain"]["index"] == 3
    assert loaded["timing"]["system1"]["rate_hz"] is None
    text = paths["report"].read_text()
    assert "cancelled by the client" in text and "interrupted by the cancel" in text
    for key in PLOTS:
        assert mpimg.imread(paths[key]).shape[0] > 100
    assert markdown_report(loaded) == text


def test_rates_table():
    assert rates_table([1.0, 0.5, 0.25, 0.0, 0.0], 1.75, 4).splitlines()[-1] == \
        "| 4 | 100.0% | 50.0% | 25.0% | 0.0% | 0.0% | 1.75 |"


def test_a_failed_run_is_written_as_incomplete_with_no_score(tmp_path):
    from openhelix_ros.evaluation.core import EvaluationConfig, EvaluationRun, TimingCollector
    from openhelix_ros.evaluation.report import build_results, load_results, write_report

    run = EvaluationRun(EvaluationConfig(num_sequences=3, seed=0, stall_timeout=1.0))
    run.start(0.0)
    run.on_reset_done(0.1, True, "s0", step=0)
    run.on_scene_state(0.2, 1)
    run.fail(0.3, "reset_scene call failed: service /reset_scene not available")
    results = build_results(run, TimingCollector(), run_name="dead-bridge", started=0.0, finished=1.0)
    assert results["status"] == "failed" and results["incomplete"] is True
    assert results["success_rates"] is None and results["average_length"] is None
    assert results["failure"] == "reset_scene call failed: service /reset_scene not available"
    assert results["interrupted_chain"]["index"] == 0
    write_report(results, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "**No score: the run failed** (reset_scene call failed" in report and "| 1/5 |" not in report
    assert load_results(tmp_path)["status"] == "failed"
