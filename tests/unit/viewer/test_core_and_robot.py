"""The viewer's sans-IO parts: what a frame redraws, the latent age against Asy(N), thinning, and the
URDF's forward kinematics against pybullet's on the same arm."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.viewer.core import ViewerCore, thin_cloud
from openhelix_ros.viewer.robot import UrdfModel, default_urdf
from openhelix_ros.viewer.scene import base_matrix


def test_a_frame_redraws_only_what_changed_and_heavy_parts_at_their_period():
    core = ViewerCore(heavy_period=1.0)
    core.on_points(np.zeros((4, 3)), np.zeros((4, 3), np.uint8), now=0.0)
    core.on_joints({"panda_joint1": 0.5}, now=0.0)
    first = core.frame(now=0.0)
    assert first.points[0].shape == (4, 3) and first.joints == {"panda_joint1": 0.5} and first.status
    again = core.frame(now=0.1)
    assert again.points is None and again.joints is None  # nothing new
    core.on_points(np.ones((5, 3)), np.zeros((5, 3), np.uint8), now=0.2)
    core.on_image("static", np.zeros((2, 2, 3), np.uint8), now=0.2)
    assert core.frame(now=0.5).points is None  # within the heavy period: held, not lost
    late = core.frame(now=1.1)
    assert late.points[0].shape == (5, 3) and set(late.images) == {"static"}


def test_latent_age_is_shown_against_the_asy_window():
    core = ViewerCore(control_rate=30.0)
    core.on_trajectory(np.zeros((2, 3)), np.ones(2), stamp_ns=int(25 / 30 * 1e9), latent_stamp_ns=int(10 / 30 * 1e9),
                       inference_time=0.05, now=0.0)
    assert core.latent_age_steps == 15
    assert "unknown" in core.status_markdown(0.0)
    core.set_latent_period(10)
    assert core.latent_window() == (10, 19)
    assert "15 steps (Asy(10), window 10–19)" in core.status_markdown(0.0)
    core.on_trajectory(np.zeros((2, 3)), np.ones(2), stamp_ns=int(40 / 30 * 1e9), latent_stamp_ns=int(10 / 30 * 1e9),
                       inference_time=0.05, now=0.1)
    assert "outside the window" in core.status_markdown(0.1)
    core.on_refused("points", "cloud has no rgb field")
    assert "points 1" in core.status_markdown(0.1)


def test_thinning_keeps_at_most_the_limit_and_drops_non_finite_points():
    xyz = np.random.default_rng(0).random((1000, 3))
    xyz[3] = np.nan
    kept, colours = thin_cloud(xyz, np.zeros((1000, 3), np.uint8), max_points=100)
    assert kept.shape == (100, 3) and colours.shape == (100, 3) and np.isfinite(kept).all()
    with pytest.raises(ValueError, match="1000 points but 3 colours"):
        thin_cloud(xyz, np.zeros((3, 3), np.uint8))


def test_urdf_link_poses_match_pybullet_on_the_panda():
    import pybullet as pb

    model = UrdfModel(default_urdf())
    positions = dict(zip(model.joint_names, [0.3, -0.3, 0.2, -2.2, 0.1, 2.0, 0.8, 0.03, 0.02], strict=True))
    poses = model.link_poses(positions)
    client = pb.connect(pb.DIRECT)
    try:
        robot = pb.loadURDF(str(default_urdf()), useFixedBase=True, physicsClientId=client)
        for joint in range(pb.getNumJoints(robot, physicsClientId=client)):
            name = pb.getJointInfo(robot, joint, physicsClientId=client)[1].decode()
            if name in positions:
                pb.resetJointState(robot, joint, positions[name], physicsClientId=client)
        for joint in range(pb.getNumJoints(robot, physicsClientId=client)):
            link = pb.getJointInfo(robot, joint, physicsClientId=client)[12].decode()
            state = pb.getLinkState(robot, joint, computeForwardKinematics=True, physicsClientId=client)
            np.testing.assert_allclose(poses[link][:3, 3], state[4], atol=1e-6, err_msg=link)
            rotation = np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3)
            np.testing.assert_allclose(poses[link][:3, :3], rotation, atol=1e-6, err_msg=link)
    finally:
        pb.disconnect(client)


def test_a_missing_mesh_and_a_bad_base_are_named(tmp_path):
    urdf = tmp_path / "arm.urdf"
    urdf.write_text('<robot name="a"><link name="base"><visual><geometry><mesh filename="package://arm/base.stl"/>'
                    '</geometry></visual></link></robot>')
    with pytest.raises(FileNotFoundError, match="mesh 'package://arm/base.stl' not found"):
        UrdfModel(urdf)
    with pytest.raises(ValueError, match="x,y,z or x,y,z,yaw_degrees"):
        base_matrix("1,2")
    np.testing.assert_allclose(base_matrix("0,-0.52,0,90")[:3, 0], [0, 1, 0], atol=1e-12)
