"""Panda kinematics: forward kinematics against pybullet's Panda, IK round trips, limits, timing."""

from __future__ import annotations

import numpy as np
import pybullet
import pybullet_data
import pytest
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.kinematics import (
    JOINT_LOWER,
    JOINT_MAX_VELOCITY,
    JOINT_UPPER,
    READY_JOINTS,
    IKSettings,
    PandaKinematics,
    UnreachableError,
    matrix_to_pose,
    pose_matrix,
    solve_trajectory,
    trajectory_times,
)

PYBULLET_TCP_LINK = 11  # panda_grasptarget, 0.105 m past the hand
PYBULLET_HAND_LINK = 8


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(Rotation.from_matrix(a[:3, :3].T @ b[:3, :3]).magnitude())


@pytest.fixture(scope="module")
def pybullet_panda():
    client = pybullet.connect(pybullet.DIRECT)
    robot = pybullet.loadURDF(pybullet_data.getDataPath() + "/franka_panda/panda.urdf", useFixedBase=True,
                              physicsClientId=client)
    yield client, robot
    pybullet.disconnect(client)


def pybullet_link_pose(client, robot, joints, link) -> np.ndarray:
    for index, value in enumerate(joints):
        pybullet.resetJointState(robot, index, value, physicsClientId=client)
    state = pybullet.getLinkState(robot, link, computeForwardKinematics=True, physicsClientId=client)
    return pose_matrix(state[4], state[5])  # the link's URDF frame, not its centre of mass


@pytest.mark.parametrize("tcp_offset, link", [(0.105, PYBULLET_TCP_LINK), (0.0, PYBULLET_HAND_LINK)])
def test_forward_kinematics_matches_pybullet_panda(pybullet_panda, tcp_offset, link):
    client, robot = pybullet_panda
    kinematics = PandaKinematics(tcp_offset=tcp_offset)
    rng = np.random.default_rng(0)
    configurations = [np.zeros(7), READY_JOINTS] + [rng.uniform(JOINT_LOWER, JOINT_UPPER) for _ in range(30)]
    for joints in configurations:
        reference = pybullet_link_pose(client, robot, joints, link)
        ours = kinematics.forward(joints)
        assert np.linalg.norm(ours[:3, 3] - reference[:3, 3]) < 1e-6
        assert rotation_angle(ours, reference) < 1e-5


def test_ready_pose_points_the_hand_down():
    tcp = PandaKinematics().forward(READY_JOINTS)
    np.testing.assert_allclose(tcp[:3, 2], [0, 0, -1], atol=1e-9)
    # Franka's ready pose puts the flange about 0.307 m in front of the base and 0.59 m up.
    np.testing.assert_allclose(tcp[:3, 3], [0.3069, 0.0, 0.5903 - 0.1034], atol=1e-3)


def test_jacobian_matches_finite_differences():
    kinematics = PandaKinematics()
    joints = np.random.default_rng(1).uniform(JOINT_LOWER, JOINT_UPPER)
    jacobian = kinematics.jacobian(joints)
    base = kinematics.forward(joints)
    eps = 1e-6
    for i in range(7):
        moved = kinematics.forward(joints + eps * np.eye(7)[i])
        np.testing.assert_allclose((moved[:3, 3] - base[:3, 3]) / eps, jacobian[:3, i], atol=1e-5)
        omega = Rotation.from_matrix(moved[:3, :3] @ base[:3, :3].T).as_rotvec() / eps
        np.testing.assert_allclose(omega, jacobian[3:, i], atol=1e-5)


def test_base_transform_moves_the_arm_in_the_world():
    base = pose_matrix([0.0, -0.52, 0.0], Rotation.from_euler("z", 90, degrees=True).as_quat())
    placed, local = PandaKinematics(base=base), PandaKinematics()
    np.testing.assert_allclose(placed.forward(READY_JOINTS), base @ local.forward(READY_JOINTS), atol=1e-12)
    result = placed.inverse(placed.forward(READY_JOINTS + 0.1), READY_JOINTS)
    assert result.success


def test_ik_round_trip_from_the_ready_pose_over_random_reachable_poses():
    """FK(IK(pose)) within 1 mm / 1 deg for poses of random configurations (a margin inside the limits)."""
    kinematics = PandaKinematics()
    rng = np.random.default_rng(7)
    for _ in range(40):
        target = kinematics.forward(rng.uniform(JOINT_LOWER + 0.05, JOINT_UPPER - 0.05))
        result = kinematics.inverse(target, READY_JOINTS)
        assert result.success, result.describe()
        reached = kinematics.forward(result.joints)
        assert np.linalg.norm(reached[:3, 3] - target[:3, 3]) < 1e-3
        assert np.degrees(rotation_angle(reached, target)) < 1.0
        assert kinematics.within_limits(result.joints)


def test_ik_warm_start_converges_fast_and_stays_close():
    kinematics = PandaKinematics()
    rng = np.random.default_rng(8)
    for _ in range(40):
        joints = rng.uniform(JOINT_LOWER + 0.2, JOINT_UPPER - 0.2)
        seed = joints + rng.normal(0, 0.05, 7)
        result = kinematics.inverse(kinematics.forward(joints), seed, IKSettings(restarts=0))
        assert result.success and result.iterations <= 20, result.describe()
        assert np.abs(result.joints - seed).max() < 0.5  # the same branch, no flip


def test_unreachable_pose_is_reported():
    kinematics = PandaKinematics()
    result = kinematics.inverse(pose_matrix([2.0, 0.0, 0.5], [0, 0, 0, 1]), READY_JOINTS, IKSettings(restarts=2))
    assert not result.success
    assert result.position_error > 0.5
    assert "did not converge" in result.describe()
    with pytest.raises(ValueError, match="7 joints"):
        kinematics.forward(np.zeros(6))
    with pytest.raises(ValueError, match="finite 4x4"):
        kinematics.inverse(np.full((4, 4), np.nan), READY_JOINTS)


def test_matrix_to_pose_round_trip():
    quaternion = Rotation.from_euler("xyz", [0.3, -0.2, 2.9]).as_quat()
    quaternion = quaternion if quaternion[3] >= 0 else -quaternion
    position, back = matrix_to_pose(pose_matrix([1, 2, 3], quaternion))
    np.testing.assert_allclose(position, [1, 2, 3])
    np.testing.assert_allclose(back, quaternion)


def test_trajectory_times_stretch_for_joint_velocity_limits():
    start = np.zeros(7)
    slow = np.array([np.full(7, 0.01), np.full(7, 0.02)])
    np.testing.assert_allclose(trajectory_times(slow, start, 0.1), [0.1, 0.2])
    fast = np.array([np.full(7, 0.5), np.full(7, 0.51)])
    times = trajectory_times(fast, start, 0.1)
    assert times[0] == pytest.approx(0.5 / JOINT_MAX_VELOCITY.min())
    assert times[1] == pytest.approx(times[0] + 0.1)


def test_solve_trajectory_follows_a_line_and_refuses_the_unreachable():
    kinematics = PandaKinematics()
    start = kinematics.forward(READY_JOINTS)
    position, quaternion = matrix_to_pose(start)
    positions = position + np.linspace(0, 1, 20)[:, None] * [0.1, 0.05, -0.1]
    quaternions = np.tile(quaternion, (20, 1))
    joints = solve_trajectory(kinematics, positions, quaternions, READY_JOINTS)
    for q, p in zip(joints, positions, strict=True):
        assert np.linalg.norm(kinematics.forward(q)[:3, 3] - p) < 1e-3
    assert np.abs(np.diff(joints, axis=0)).max() < 0.1  # continuous
    far = positions.copy()
    far[10:] = [1.5, 0.0, 0.5]
    with pytest.raises(UnreachableError, match="waypoint 10 of 20 .* unreachable"):
        solve_trajectory(kinematics, far, quaternions, READY_JOINTS, IKSettings(restarts=2))


def test_arm_planner_turns_a_world_trajectory_into_controller_commands():
    """arm/core.py, without ROS: IK from the current joints, base-frame targets, gripper signs, the
    waypoint due at a time, and a named refusal for each unusable input."""
    from openhelix_ros.arm.core import ArmPlanner
    from openhelix_ros.arm.kinematics import matrix_to_pose, pose_matrix
    from openhelix_ros.arm.safety import SafetyFilter, VelocityLimits, WorkspaceBounds
    from openhelix_ros.common.conversions import TrajectoryArrays

    base = pose_matrix([0.0, -0.52, 0.0], [0.0, 0.0, 0.7071067811865476, 0.7071067811865476])
    kinematics = PandaKinematics(base=base)
    planner = ArmPlanner(kinematics, SafetyFilter(WorkspaceBounds(), VelocityLimits(1.0, 2.0)), "world", 0.5, 0.5)
    start, quaternion = matrix_to_pose(kinematics.forward(READY_JOINTS))
    positions = start + np.array([[0.0, 0.0, -0.005 * (i + 1)] for i in range(5)])
    trajectory = TrajectoryArrays(positions, np.tile(quaternion, (5, 1)), np.array([1, 1, 0, -1, 1.0]), 1 / 30)
    plan = planner.plan(trajectory, READY_JOINTS, joints_age=0.01)
    assert plan.joints.shape == (5, 7) and np.all(np.diff(plan.times) > 0)
    reached, _ = matrix_to_pose(kinematics.forward(plan.joints[-1]))
    np.testing.assert_allclose(reached, positions[-1], atol=1e-4)
    np.testing.assert_allclose(plan.gripper, [1, 1, -1, -1, 1])
    local = np.linalg.inv(base) @ pose_matrix(positions[0], quaternion)
    np.testing.assert_allclose(plan.base_poses[0][0], local[:3, 3], atol=1e-9)
    assert [plan.due(t) for t in (0.0, plan.times[1], 10.0)] == [0, 1, 4]
    for bad, joints, age, message in [
        (TrajectoryArrays(positions, trajectory.quaternions, trajectory.gripper, 1 / 30, frame_id="map"),
         READY_JOINTS, 0.0, "frame 'map'"),
        (trajectory, None, 0.0, "no joint_states"),
        (trajectory, READY_JOINTS, 2.0, "2.00 s old"),
    ]:
        with pytest.raises(ValueError, match=message):
            planner.plan(bad, joints, age)
