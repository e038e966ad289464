"""The calvin_env backend: exercised when the user has CALVIN installed, skipped (with the reason)
otherwise; without it, asking for it fails with instructions."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.sim import make_env
from openhelix_ros.sim.calvin_backend import calvin_available


@pytest.mark.skipif(calvin_available(), reason="calvin_env is installed; the missing-backend message is moot")
def test_missing_calvin_env_is_explained():
    with pytest.raises(RuntimeError, match="calvin_env.*not installed"):
        make_env(backend="calvin")


def test_calvin_backend_interface():
    pytest.importorskip("calvin_env", reason="calvin_env (CALVIN's simulator) is not installed; it is not on PyPI")
    env = make_env(backend="calvin", seed=0)
    try:
        obs = env.reset()
        assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3)
        assert obs["robot_obs"].shape == (15,) and obs["scene_obs"].shape == (24,)
        start = env.get_info()
        obs, _, _, info = env.step(np.zeros(7))
        assert env.tasks.get_task_info_for_set(start, info, {"open_drawer"}) == set()
        with pytest.raises(ValueError):
            env.step(np.full(7, np.nan))
    finally:
        env.close()


def test_actions_map_to_calvins_conventions_as_on_the_play_table():
    from openhelix_ros.sim.calvin_backend import calvin_action

    position, euler, gripper = calvin_action(([0.1, -0.2, 0.5], [3.1, 0.0, 1.5], np.float64(0.3)))
    assert gripper == 1 and type(gripper) is int  # calvin calls len() on anything but an int
    assert calvin_action(([0.1, -0.2, 0.5], [3.1, 0.0, 1.5], np.array([0.0])))[2] == -1  # 0 closes, as here
    assert calvin_action(([0.1, -0.2, 0.5], [3.1, 0.0, 1.5], -0.7))[2] == -1
    np.testing.assert_array_equal(position, [0.1, -0.2, 0.5])
    relative = calvin_action(np.array([2.0, -0.5, 0.0, 0.1, -3.0, 0.0, 0.4]))
    np.testing.assert_array_equal(relative, [1.0, -0.5, 0.0, 0.1, -1.0, 0.0, 1.0])  # clipped, gripper exactly +-1
    assert calvin_action(np.zeros(7))[6] == -1.0
    with pytest.raises(ValueError, match="gripper action"):
        calvin_action(([0.1, -0.2, 0.5], [3.1, 0.0, 1.5], float("nan")))
    with pytest.raises(ValueError, match="action"):
        calvin_action(np.zeros(6))
    # The play table reads the same gripper commands the same way.
    env = make_env(render=False, seed=0)
    try:
        env.reset()
        for command, expected in ((0.3, 1.0), (0.0, -1.0), (-0.7, -1.0)):
            env.step(([0.0, -0.1, 0.3], [np.pi, 0.0, 0.0], command))
            assert env.gripper_action == expected == calvin_action(([0, 0, 0], [0, 0, 0], command))[2]
    finally:
        env.close()


def _calvin_env(**options):
    pytest.importorskip("calvin_env", reason="calvin_env (CALVIN's simulator) is not installed; it is not on PyPI")
    return make_env(backend="calvin", **options)


def test_calvin_absolute_actions_both_cameras_and_seeds():
    env = _calvin_env(seed=3)
    try:
        first = env.reset(seed=5)["scene_obs"]
        tcp = env.get_obs()["robot_obs"][:6]
        obs, _, _, _ = env.step((tcp[:3] + [0.0, 0.0, 0.02], tcp[3:6], 0.5))
        assert obs["robot_obs"][2] > tcp[2]
        cameras = env.camera_info()
        assert set(cameras) == {"static", "gripper"}
        assert all(info["extrinsics"] is not None and info["extrinsics"].shape == (4, 4) for info in cameras.values())
        again = env.reset(seed=5)["scene_obs"]
        other = env.reset(seed=6)["scene_obs"]
        # The same seed samples the same scene; calvin's one settling step after placing the blocks leaves
        # a few mm that depend on what the world did before (measured up to 5 mm), another seed metres.
        np.testing.assert_allclose(again, first, atol=0.01)
        assert np.abs(other - first).max() > 0.05
    finally:
        env.close()
        env.close()  # a second close is harmless
    later = _calvin_env(seed=0)  # and the next env in this process works
    try:
        assert later.reset()["robot_obs"].shape == (15,)
    finally:
        later.close()


def test_calvin_dynamic_block_moves_as_on_the_play_table():
    env = _calvin_env(dynamic="left", dynamic_speed=0.02)
    try:
        env.reset()
        env.begin_subtask("lift_red_block_table")
        start = env.get_obs()["scene_obs"][6:8].copy()
        hold = env.get_obs()["robot_obs"][:6]
        for _ in range(60):  # 2 s
            env.step((hold[:3], hold[3:6], 1.0))
        moved = np.linalg.norm(env.get_obs()["scene_obs"][6:8] - start)
        assert 0.03 < moved < 0.05, moved  # 0.02 m/s for 2 s
        # It turns back after 8 cm and stays on the desk's free strip, as on the play table.
        (x0, x1), (y0, y1) = env.geometry.dynamic_strip
        xs = []
        for _ in range(300):  # 10 s more: 20 cm of travel
            obs, *_ = env.step((hold[:3], hold[3:6], 1.0))
            xs.append(obs["scene_obs"][6])
            assert x0 < obs["scene_obs"][6] < x1 and y0 < obs["scene_obs"][7] < y1
        assert start[0] - 0.09 < min(xs) and max(xs) - min(xs) > 0.07  # out 8 cm and back
    finally:
        env.close()


def test_calvin_start_states_match_calvin_models_when_installed():
    utils = pytest.importorskip("calvin_agent.evaluation.utils",
                                reason="calvin_agent (calvin_models) is not installed")
    from openhelix_ros.sim.calvin_states import calvin_state_for_condition
    from openhelix_ros.sim.protocol import initial_conditions

    for condition in initial_conditions():
        robot_obs, scene_obs = utils.get_env_state_for_initial_condition(condition)
        ours = calvin_state_for_condition(condition)
        np.testing.assert_array_equal(ours[0], robot_obs)
        np.testing.assert_array_equal(ours[1], scene_obs)


def test_calvin_scene_geometry_is_measured_from_calvin_env():
    pytest.importorskip("calvin_env", reason="calvin_env (CALVIN's simulator) is not installed; it is not on PyPI")
    from openhelix_ros.sim.backends import scene_geometry, workspace

    geometry = scene_geometry("calvin")
    assert geometry.name == "calvin_scene_D" and geometry.block_names == ("block_red", "block_blue", "block_pink")
    assert geometry.table_top == pytest.approx(0.44, abs=0.005)  # blocks rest with their centres at 0.46
    assert geometry.block_sizes["block_pink"] == pytest.approx((0.08, 0.04, 0.04), abs=0.002)
    # The drawer opens towards the robot; its handle hangs below the desk, in front of it.
    assert geometry.drawer_grip_y < geometry.drawer_front_y < geometry.table_region_y[0]
    assert geometry.drawer_handle_z < geometry.table_top and geometry.drawer_hook
    assert geometry.door_direction == -1.0 and geometry.door_range[1] == pytest.approx(0.28, abs=0.005)
    assert abs(np.linalg.norm(geometry.switch_direction) - 1.0) < 1e-9 and geometry.switch_direction[2] > 0.5
    low, high = workspace("calvin")
    assert low[2] < geometry.drawer_bottom < geometry.table_top < high[2]
    with pytest.raises(ValueError, match="no scene"):
        scene_geometry("calvin", "calvin_scene_Z")


@pytest.mark.parametrize("task, seed", [
    ("open_drawer", 0), ("move_slider_left", 0), ("push_red_block_right", 0), ("turn_on_led", 0),
    ("lift_blue_block_table", 0), ("stack_block", 0), ("turn_on_lightbulb", 0), ("turn_off_lightbulb", 0),
    ("lift_blue_block_slider", 2),  # the right compartment: the hand leans back and turns from the side wall
    ("place_in_slider", 5),  # both compartments hold a block: squeezed in beside one
    ("place_in_slider", 2),  # ... and only with the door pushed away
])
def test_the_scripted_expert_solves_calvin_tasks_in_calvin_env(task, seed):
    """The expert plans in calvin's measured geometry and CALVIN's own oracle judges it, from a CALVIN start
    state (sim/expert_report.py, as `--backend calvin` measures all 34 tasks)."""
    from openhelix_ros.sim.expert import ScriptedExpert
    from openhelix_ros.sim.expert_report import _run_until, prepare_start

    env = _calvin_env(render=False)
    try:
        expert = ScriptedExpert(env)
        assert expert.g.name == "calvin_scene_D"
        obs = prepare_start(env, task, seed, expert)
        solved, steps, _ = _run_until(env, expert, task, obs, 360)
        assert solved, f"{task} not solved in 360 steps on calvin_env"
    finally:
        env.close()
