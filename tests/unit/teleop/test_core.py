"""The tele-operation core without ROS: integration of twists, the limits, the dead man's switch,
resets, and the keyboard mapping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.safety import WorkspaceBounds
from openhelix_ros.bridge.core import quaternion_to_euler
from openhelix_ros.teleop.core import KEY_BINDINGS, KeyboardTeleop, TeleopConfig, TeleopCore

START = np.array([0.1, -0.1, 0.4])
START_EULER = np.array([np.pi, 0.0, np.pi / 2])


def robot_obs(position=START, euler=START_EULER, gripper_action=1.0):
    obs = np.zeros(15)
    obs[:3], obs[3:6], obs[6], obs[14] = position, euler, 0.08, gripper_action
    return obs


def anchored(config=None, **kwargs) -> TeleopCore:
    core = TeleopCore(config or TeleopConfig(), **kwargs)
    assert core.observe(robot_obs(), step=0, stamp_ns=0)  # the first observation anchors the target
    return core


def test_a_twist_moves_the_target_by_speed_times_period_per_tick():
    core = anchored()
    assert core.plan(now=0.0).positions[0] == pytest.approx(START)  # no command yet: hold
    core.command([0.03, 0.0, -0.06], [0.0, 0.0, 0.0], now=0.0)
    plan = core.plan(now=0.01)
    assert plan.positions[0] == pytest.approx(START + np.array([0.03, 0.0, -0.06]) / 30)
    assert plan.period == pytest.approx(1 / 30) and plan.gripper.tolist() == [1.0]
    assert Rotation.from_quat(plan.quaternions[0]).as_euler("xyz") == pytest.approx(
        Rotation.from_euler("xyz", START_EULER).as_euler("xyz"))


def test_world_and_tool_frames_rotate_about_different_axes():
    world, tool = anchored(), anchored(TeleopConfig(twist_frame="tool"))
    for core in (world, tool):
        core.command([0, 0, 0], [0.0, 0.0, 0.9], now=0.0)
    start = Rotation.from_euler("xyz", START_EULER)
    step = Rotation.from_rotvec([0.0, 0.0, 0.9 / 30])
    assert Rotation.from_quat(world.plan(0.0).quaternions[0]).as_matrix() == pytest.approx(
        (step * start).as_matrix())
    assert Rotation.from_quat(tool.plan(0.0).quaternions[0]).as_matrix() == pytest.approx(
        (start * step).as_matrix())
    # Linear motion in the tool frame follows the gripper's axes: its z points down at this orientation.
    down = anchored(TeleopConfig(twist_frame="tool"))
    down.command([0.0, 0.0, 0.15], [0, 0, 0], now=0.0)
    assert down.plan(0.0).positions[0] == pytest.approx(START + [0.0, 0.0, -0.15 / 30])


def test_commands_above_the_limits_are_scaled_keeping_their_direction():
    core = anchored(TeleopConfig(max_linear_speed=0.2, max_angular_speed=0.5))
    assert core.command([3.0, 4.0, 0.0], [0.0, 0.0, 2.0], now=0.0)
    linear, angular = core.velocity(now=0.0)
    assert linear == pytest.approx([0.12, 0.16, 0.0]) and angular == pytest.approx([0.0, 0.0, 0.5])
    assert not core.command([0.1, 0.0, 0.0], [0.0, 0.0, 0.0], now=0.0)


def test_dead_mans_switch_stops_after_the_timeout():
    core = anchored(TeleopConfig(command_timeout=0.5))
    core.command([0.1, 0.0, 0.0], [0, 0, 0], now=10.0)
    assert core.velocity(10.4)[0] == pytest.approx([0.1, 0.0, 0.0])
    assert core.velocity(10.6)[0] == pytest.approx([0.0, 0.0, 0.0])
    before = core.plan(now=10.6).positions[0]
    assert core.plan(now=10.7).positions[0] == pytest.approx(before)


def test_bad_twists_are_refused_by_name_and_stop_the_arm():
    core = anchored()
    core.command([0.1, 0.0, 0.0], [0, 0, 0], now=0.0)
    with pytest.raises(ValueError, match="twist linear contains NaN"):
        core.command([np.nan, 0.0, 0.0], [0, 0, 0], now=0.1)
    assert core.velocity(0.1)[0] == pytest.approx([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="twist angular must have 3 components"):
        core.command([0.0, 0.0, 0.0], [0.0, 0.0], now=0.1)
    with pytest.raises(ValueError, match="robot_obs must have 15 values"):
        core.observe(np.zeros(7), step=1, stamp_ns=1)


def test_target_stays_in_the_workspace_and_close_to_the_measured_arm():
    bounds = WorkspaceBounds(low=(-0.5, -0.5, 0.38), high=(0.5, 0.5, 0.6))
    core = anchored(TeleopConfig(max_lead=0.02), bounds=bounds)
    core.command([0.0, 0.0, -0.25], [0, 0, 0], now=0.0)
    for _ in range(10):
        plan = core.plan(now=0.0)
    assert plan.positions[0][2] == pytest.approx(0.38)  # the floor of the box
    # The arm does not follow (blocked): the target runs at most max_lead ahead of it.
    core.command([0.25, 0.0, 0.0], [0, 0, 0], now=0.0)
    for _ in range(30):
        plan = core.plan(now=0.0)
    assert np.linalg.norm(plan.positions[0] - START) == pytest.approx(0.02)


def test_horizon_extrapolates_the_twist_for_a_realtime_bridge():
    core = anchored(TeleopConfig(horizon=4))
    core.command([0.0, 0.15, 0.0], [0, 0, 0], now=0.0)
    plan = core.plan(now=0.0)
    assert plan.positions.shape == (4, 3) and plan.quaternions.shape == (4, 4)
    assert np.diff(plan.positions[:, 1]) == pytest.approx([0.005, 0.005, 0.005])


def test_a_reset_reanchors_the_target_and_takes_the_gripper_from_the_robot():
    core = anchored()
    core.command([0.1, 0.0, 0.0], [0, 0, 0], now=0.0)
    core.plan(0.0)
    assert core.toggle_gripper() and core.plan(0.0).gripper.tolist() == [-1.0]
    assert not core.observe(robot_obs(), step=1, stamp_ns=33)  # the next step: no reset
    assert not core.observe(robot_obs(), step=1, stamp_ns=33)  # re-sent: no reset
    elsewhere = np.array([-0.2, 0.1, 0.3])
    assert core.observe(robot_obs(elsewhere, gripper_action=-1.0), step=0, stamp_ns=0)
    plan = core.plan(0.0)
    assert plan.positions[0] == pytest.approx(elsewhere) and plan.gripper.tolist() == [-1.0]
    # A reset to step 0 straight after one at step 0 shows as the arm having moved.
    assert core.observe(robot_obs(START), step=0, stamp_ns=0)
    assert quaternion_to_euler(core.plan(0.0).quaternions[0]) == pytest.approx(START_EULER)


def test_keyboard_maps_keys_to_unit_axes_gripper_and_episode_control():
    keyboard = KeyboardTeleop(linear_speed=0.1, angular_speed=0.5)
    forward = keyboard.press("w")
    assert forward.twist[0] == pytest.approx([0.0, 0.1, 0.0]) and forward.twist[1] == pytest.approx([0, 0, 0])
    assert keyboard.press("J").twist[1] == pytest.approx([0.0, 0.0, 0.5])  # case-insensitive
    assert keyboard.press(" ").toggle_gripper
    assert keyboard.press("\r").end_episode and keyboard.press("q").quit and keyboard.press("\x03").quit
    assert keyboard.press("z") is None
    # Every motion key moves along exactly one axis, and opposite keys cancel.
    for linear, angular in KEY_BINDINGS.values():
        assert np.count_nonzero(np.concatenate([linear, angular])) == 1
    assert len({tuple(map(tuple, b)) for b in KEY_BINDINGS.values()}) == 12
    with pytest.raises(ValueError, match="keyboard speeds must be > 0"):
        KeyboardTeleop(linear_speed=0.0)


def test_config_refuses_bad_values_by_name():
    with pytest.raises(ValueError, match="twist_frame must be one of"):
        TeleopConfig(twist_frame="base")
    with pytest.raises(ValueError, match="command_timeout must be > 0"):
        TeleopConfig(command_timeout=float("nan"))
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        TeleopConfig(horizon=0)
