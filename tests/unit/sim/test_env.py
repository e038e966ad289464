"""Observation layout (keys, shapes, dtypes, units), control (30 Hz, 8 substeps, absolute and relative
actions), cameras and the fused point cloud, determinism."""

from __future__ import annotations

import math

import numpy as np
import pybullet as pb
import pytest

from openhelix_ros.sim import fuse_point_cloud, make_env
from openhelix_ros.sim import scene as sc


@pytest.fixture(scope="module")
def rendered_env():
    environment = make_env(seed=3)
    yield environment
    environment.close()


def test_observation_keys_shapes_dtypes(rendered_env):
    obs = rendered_env.reset(seed=3)
    assert set(obs) == {"rgb_obs", "depth_obs", "robot_obs", "scene_obs"}
    assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3) and obs["rgb_obs"]["rgb_static"].dtype == np.uint8
    assert obs["rgb_obs"]["rgb_gripper"].shape == (84, 84, 3) and obs["rgb_obs"]["rgb_gripper"].dtype == np.uint8
    assert obs["depth_obs"]["depth_static"].shape == (200, 200)
    assert obs["depth_obs"]["depth_static"].dtype == np.float32
    assert obs["depth_obs"]["depth_gripper"].shape == (84, 84)
    assert obs["depth_obs"]["depth_gripper"].dtype == np.float32
    assert obs["robot_obs"].shape == (15,) and obs["scene_obs"].shape == (24,)
    # Depth in metres: the static camera is about 1.2 m from the desk's centre.
    centre = float(obs["depth_obs"]["depth_static"][100, 100])
    assert 0.6 < centre < 1.8
    assert rendered_env.renderer_name in ("tiny", "egl")


def test_robot_and_scene_obs_follow_calvin_order(env):
    obs = env.reset(seed=5)
    robot, scene = obs["robot_obs"], obs["scene_obs"]
    tcp = pb.getLinkState(env.robot, sc.PANDA_TCP_LINK, computeForwardKinematics=True, physicsClientId=env.client)
    np.testing.assert_allclose(robot[:3], tcp[4], atol=1e-9)  # tcp position
    np.testing.assert_allclose(robot[3:6], pb.getEulerFromQuaternion(tcp[5]), atol=1e-9)  # tcp euler
    assert 0.0 <= robot[6] <= 0.0801  # gripper opening width
    np.testing.assert_allclose(robot[7:14], [pb.getJointState(env.robot, j, physicsClientId=env.client)[0]
                                            for j in range(7)])
    assert robot[14] in (-1.0, 1.0)  # last gripper action
    for index, name in enumerate(sc.BLOCK_NAMES):  # blocks: xyz + euler, red, blue, pink
        position, orientation = pb.getBasePositionAndOrientation(env.handles.blocks[name],
                                                                 physicsClientId=env.client)
        np.testing.assert_allclose(scene[6 + 6 * index:9 + 6 * index], position)
        np.testing.assert_allclose(scene[9 + 6 * index:12 + 6 * index], pb.getEulerFromQuaternion(orientation))
    assert scene[4] in (0.0, 1.0) and scene[5] in (0.0, 1.0)  # lightbulb, LED


def test_control_rate_and_substeps(env):
    assert env.config.control_hz == 30 and env.config.physics_substeps == 8
    parameters = pb.getPhysicsEngineParameters(physicsClientId=env.client)
    assert parameters["fixedTimeStep"] == pytest.approx(1 / 240)


def test_relative_action_moves_the_tcp_by_its_scale(env):
    obs = env.reset(seed=1)
    start = obs["robot_obs"][:3].copy()
    for _ in range(10):
        obs, *_ = env.step(np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
    for _ in range(10):  # let the arm catch up with its target
        obs, *_ = env.step(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
    moved = obs["robot_obs"][:3] - start
    assert moved[0] == pytest.approx(10 * 0.02, abs=0.015)
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01


def test_absolute_action_reaches_the_pose_and_gripper_closes(env):
    obs = env.reset(seed=1)
    target = np.array([0.1, -0.15, 0.2])
    euler = np.array([math.pi, 0.0, 1.0])
    for _ in range(40):
        obs, *_ = env.step((target, euler, -1.0))
    np.testing.assert_allclose(obs["robot_obs"][:3], target, atol=0.005)
    assert abs(((obs["robot_obs"][5] - 1.0) + math.pi) % (2 * math.pi) - math.pi) < 0.02
    assert obs["robot_obs"][6] < 0.005 and obs["robot_obs"][14] == -1.0


def test_camera_info_and_fused_point_cloud(rendered_env):
    obs = rendered_env.reset(seed=3)
    cameras = rendered_env.camera_info()
    for name, (width, height) in (("static", (200, 200)), ("gripper", (84, 84))):
        assert cameras[name]["intrinsics"].shape == (3, 3)
        extrinsics = cameras[name]["extrinsics"]
        assert extrinsics.shape == (4, 4)
        np.testing.assert_allclose(extrinsics[:3, :3] @ extrinsics[:3, :3].T, np.eye(3), atol=1e-9)
        assert (cameras[name]["width"], cameras[name]["height"]) == (width, height)
    xyz, rgb = fuse_point_cloud(obs, cameras)
    assert xyz.dtype == np.float32 and rgb.dtype == np.uint8 and xyz.shape == rgb.shape and xyz.shape[1] == 3
    assert len(xyz) > 20000
    # The desk top is the plane z = 0: many points lie on it, and nothing lies far below the floor.
    on_desk = (np.abs(xyz[:, 2]) < 0.004) & (np.abs(xyz[:, 0]) < 0.55) & (xyz[:, 1] > -0.18) & (xyz[:, 1] < 0.0)
    assert on_desk.sum() > 1000
    # Each block's centre has fused points within its size (geometry and colours line up).
    for index, name in enumerate(sc.BLOCK_NAMES):
        centre = obs["scene_obs"][6 + 6 * index:9 + 6 * index]
        near = np.linalg.norm(xyz - centre, axis=1) < max(sc.BLOCK_SIZES[name])
        if near.sum() > 20:  # visible from one of the cameras
            colour = np.asarray(sc.BLOCK_COLOURS[name][:3]) * 255
            mean = rgb[near].mean(axis=0)
            assert np.argmax(mean) == np.argmax(colour)


def test_same_seed_same_observations():
    first, second = make_env(seed=11), make_env(seed=11)
    try:
        obs_a, obs_b = first.reset(seed=11), second.reset(seed=11)
        actions = [np.array([0.5, -0.3, -0.4, 0.0, 0.0, 0.2, -1.0])] * 12
        for action in actions:
            obs_a, *_ = first.step(action)
            obs_b, *_ = second.step(action)
        np.testing.assert_array_equal(obs_a["robot_obs"], obs_b["robot_obs"])
        np.testing.assert_array_equal(obs_a["scene_obs"], obs_b["scene_obs"])
        np.testing.assert_array_equal(obs_a["rgb_obs"]["rgb_static"], obs_b["rgb_obs"]["rgb_static"])
        np.testing.assert_array_equal(obs_a["depth_obs"]["depth_gripper"], obs_b["depth_obs"]["depth_gripper"])
    finally:
        first.close()
        second.close()


def test_different_seeds_give_different_scenes(env):
    assert not np.allclose(env.reset(seed=1)["scene_obs"], env.reset(seed=2)["scene_obs"])


def test_lights_are_visible_in_the_image(rendered_env):
    scene = rendered_env.reset(seed=3)["scene_obs"].copy()
    robot = rendered_env.get_robot_obs()
    scene[3], scene[4], scene[5] = 0.0, 0.0, 0.0
    dark = rendered_env.reset(robot_obs=robot, scene_obs=scene)["rgb_obs"]["rgb_static"].astype(int)
    scene[3], scene[4], scene[5] = 0.08, 1.0, 1.0
    lit = rendered_env.reset(robot_obs=robot, scene_obs=scene)["rgb_obs"]["rgb_static"].astype(int)
    changed = np.abs(lit - dark).sum(axis=2) > 60
    assert changed.sum() > 15  # the LED and the bulb change colour (the switch moved a little too)


def test_button_press_toggles_the_led_and_switch_drives_the_bulb(env):
    env.reset(seed=4)
    led_before = env.led_on
    button = env.handles.table_joints[sc.BUTTON_JOINT]
    pb.resetJointState(env.table, button, -0.018, physicsClientId=env.client)
    env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert env.led_on != led_before
    switch = env.handles.table_joints[sc.SWITCH_JOINT]
    pb.resetJointState(env.table, switch, 0.075, physicsClientId=env.client)
    env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert env.lightbulb_on
    pb.resetJointState(env.table, switch, 0.005, physicsClientId=env.client)
    env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert not env.lightbulb_on


def test_the_simulator_is_ros_free():
    import subprocess
    import sys

    code = ("import sys, openhelix_ros.sim, openhelix_ros.sim.expert_report, openhelix_ros.sim.calvin_backend, "
            "openhelix_ros.cli.bench_sim; print('rclpy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
