"""openhelix compare's bookkeeping without ROS: Wilson intervals, resumable state, the row of a system."""

from __future__ import annotations

import math

import pytest

from openhelix_ros.evaluation.comparison import (
    ComparisonState,
    SystemRecord,
    markdown,
    plot,
    summarize,
    wilson_interval,
)
from openhelix_training.systems import load_system

SETTINGS = {"systems": ["openhelix", "hirt"], "size": "tiny", "data": {"kind": "synthetic"}, "steps": 2,
            "pretrain_steps": 2, "episodes": 4, "tasks": ["open_drawer"], "seed": 0, "batch_size": 4,
            "episode_length": 0, "protocol": "calvin", "clock_mode": "lockstep"}


def test_wilson_interval_is_sound_at_the_edges():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)  # never width zero at 0/n
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-3)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-3), pytest.approx(0.7634, abs=1e-3))
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_state_resumes_under_the_same_settings_and_refuses_others(tmp_path):
    state = ComparisonState.load_or_start(tmp_path, SETTINGS)
    state.systems["hirt"].stages["train"] = "done"
    state.save(tmp_path)
    again = ComparisonState.load_or_start(tmp_path, SETTINGS)
    assert again.systems["hirt"].done("train") and not again.systems["hirt"].done("evaluate")
    with pytest.raises(ValueError, match=r"other settings \(steps: 2 there, 5 now\)"):
        ComparisonState.load_or_start(tmp_path, {**SETTINGS, "steps": 5})


def results(successes: int, episodes: int) -> dict:
    chains = [{"completed": 1 if i < successes else 0} for i in range(episodes)]
    return {"status": "completed", "chains": chains, "average_length": successes / episodes,
            "timing": {"system2": {"messages": 3, "rate_hz": 1.5, "inference_time_s": {"p50": 0.02, "p90": 0.03}},
                       "system1": {"messages": 30, "rate_hz": 15.0, "inference_time_s": {"p50": 0.01}},
                       "goal_latent_shapes": {"1x32+0": 3}}}


def test_a_row_shows_figures_a_failure_shows_its_reason_and_no_score(tmp_path):
    state = ComparisonState.load_or_start(tmp_path, SETTINGS)
    state.systems["openhelix"] = SystemRecord("openhelix", {s: "done" for s in ("pretrain", "train", "evaluate")},
                                              summary=summarize(results(3, 4)))
    state.systems["hirt"] = SystemRecord("hirt", {"train": "failed: training: ValueError: no fit"})
    systems = {name: load_system(name) for name in SETTINGS["systems"]}
    text = markdown(state, systems)
    assert "| openhelix | prompt_tuning, act | 1x32+0 | points | pretrained | 10 | 3/4 (75 %) | 30-95 % | 0.75 | 20.0 |" \
        in text
    row = next(line for line in text.splitlines() if line.startswith("| hirt |"))
    assert "**failed: training: ValueError: no fit**" in row and "%" not in row
    assert summarize(results(3, 4))["ci95"] == list(wilson_interval(3, 4))
    plot(state, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 1000


def test_a_setting_added_later_reads_as_its_default_when_resuming(tmp_path):
    older = {k: v for k, v in {**SETTINGS, "pretrained_policy": ""}.items() if k != "pretrained_policy"}
    ComparisonState.load_or_start(tmp_path, older).save(tmp_path)
    ComparisonState.load_or_start(tmp_path, {**SETTINGS, "pretrained_policy": ""})  # the same comparison
    with pytest.raises(ValueError, match="pretrained_policy: None there, '/p' now"):
        ComparisonState.load_or_start(tmp_path, {**SETTINGS, "pretrained_policy": "/p"})
