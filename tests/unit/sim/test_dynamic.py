"""CALVIN-D: the target block of a grasp-related subtask moves in the configured pattern; others
stay still; static environments never move blocks."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.sim import make_env
from openhelix_ros.sim.dynamic import DYNAMIC_TASKS

HOLD = np.array([0, 0, 0, 0, 0, 0, 1.0])


def block_xy_after(env, task: str, steps: int = 45) -> tuple[np.ndarray, np.ndarray]:
    obs = env.reset_to_condition({"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed",
                                  "red_block": "table", "blue_block": "slider_left",
                                  "pink_block": "slider_right", "grasped": 0}, seed=2)
    start = obs["scene_obs"][6:8].copy()
    env.begin_subtask(task)
    for _ in range(steps):
        obs, *_ = env.step(HOLD)
    return start, obs["scene_obs"][6:8]


@pytest.mark.parametrize("mode,expected", [("left", (-1, 0)), ("forward", (0, 1)), ("diagonal", (-1, 1))])
def test_linear_motions(mode, expected):
    env = make_env(render=False, dynamic=mode, dynamic_speed=0.03)
    try:
        start, end = block_xy_after(env, "lift_red_block_table", steps=20)
        moved = end - start
        assert np.linalg.norm(moved) > 0.01  # 2/3 s at 3 cm/s, minus friction losses
        direction = moved / np.linalg.norm(moved)
        assert np.dot(direction, np.array(expected) / np.linalg.norm(expected)) > 0.9
    finally:
        env.close()


def test_circle_stays_near_its_start():
    env = make_env(render=False, dynamic="circle", dynamic_speed=0.03)
    try:
        start, end = block_xy_after(env, "lift_red_block_table", steps=120)
        assert 0.005 < np.linalg.norm(end - start) < 2 * env.config.dynamic_circle_radius + 0.01
    finally:
        env.close()


def test_no_motion_without_dynamic_or_for_other_tasks(env):
    start, end = block_xy_after(env, "lift_red_block_table")
    np.testing.assert_allclose(start, end, atol=1e-3)
    moving = make_env(render=False, dynamic="left")
    try:
        start, end = block_xy_after(moving, "open_drawer")
        np.testing.assert_allclose(start, end, atol=1e-3)
    finally:
        moving.close()
    assert set(DYNAMIC_TASKS) >= {"lift_red_block_table", "lift_blue_block_table", "lift_pink_block_table"}
