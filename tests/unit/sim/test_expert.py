"""The scripted expert on a handful of tasks (the full 34 x 20 table is
``python -m openhelix_ros.sim.expert_report``, not a test)."""

from __future__ import annotations

import pytest

from openhelix_ros.sim import ScriptedExpert, make_env
from openhelix_ros.sim.expert_report import _run_until, prepare_start


@pytest.mark.parametrize("task,seed", [
    ("open_drawer", 0), ("lift_blue_block_table", 1), ("push_pink_block_left", 2), ("turn_on_led", 3),
    ("move_slider_right", 0), ("rotate_red_block_left", 4), ("place_in_drawer", 5), ("unstack_block", 6),
    ("lift_pink_block_slider", 7),
])
def test_expert_solves(env, task, seed):
    expert = ScriptedExpert(env)
    obs = prepare_start(env, task, seed, expert)
    success, steps, _ = _run_until(env, expert, task, obs, 360)
    assert success, f"{task} (seed {seed}) not completed in 360 steps"
    assert steps < 300


@pytest.mark.parametrize("mode", ["circle", "diagonal"])
def test_expert_catches_a_moving_block(mode):
    env = make_env(render=False, dynamic=mode, dynamic_speed=0.03)
    try:
        expert = ScriptedExpert(env)
        obs = prepare_start(env, "lift_red_block_table", 1, expert)
        start = obs["scene_obs"][6:9].copy()
        success, _, obs = _run_until(env, expert, "lift_red_block_table", obs, 360)
        assert success
        # It was really moving: the block was caught away from where it started.
        assert abs(obs["scene_obs"][6] - start[0]) + abs(obs["scene_obs"][7] - start[1]) > 0.01
    finally:
        env.close()
