"""Workspace clipping, velocity limiting and the latent age gate (arm/safety.py, ROS-free)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.safety import (
    LatentAgeGate,
    SafetyFilter,
    VelocityLimits,
    WorkspaceBounds,
    limit_velocity,
)

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def steps(positions, start):
    return np.linalg.norm(np.diff(np.vstack([start, positions]), axis=0), axis=1)


def angles(quaternions, start):
    rotations = Rotation.from_quat(np.vstack([start, quaternions]))
    return np.array([(rotations[i].inv() * rotations[i + 1]).magnitude() for i in range(len(rotations) - 1)])


def test_bounds_validate_and_clip():
    with pytest.raises(ValueError, match="every low must be below its high"):
        WorkspaceBounds(low=(0, 0, 0), high=(1, 0, 1))
    with pytest.raises(ValueError, match="finite"):
        WorkspaceBounds(low=(0, 0, float("nan")), high=(1, 1, 1))
    bounds = WorkspaceBounds(low=(-1, -1, 0), high=(1, 1, 1))
    points = np.array([[0.5, 0.5, 0.5], [2.0, -3.0, 0.5], [0.0, 0.0, -1.0]])
    assert bounds.contains(points).tolist() == [True, False, False]
    np.testing.assert_array_equal(bounds.clip(points), [[0.5, 0.5, 0.5], [1.0, -1.0, 0.5], [0.0, 0.0, 0.0]])


def test_velocity_limits_validate():
    with pytest.raises(ValueError, match="max_linear_speed must be > 0"):
        VelocityLimits(max_linear_speed=0.0)
    with pytest.raises(ValueError, match="max_angular_speed"):
        VelocityLimits(max_angular_speed=float("nan"))


def test_translation_steps_are_scaled_not_redirected():
    limits = VelocityLimits(max_linear_speed=0.3, max_angular_speed=10.0)
    period = 0.1  # at most 3 cm per step
    targets = np.array([[0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0]])
    positions, _, slowed, _ = limit_velocity(targets, np.tile(IDENTITY, (5, 1)), period, limits,
                                             np.zeros(3), IDENTITY)
    np.testing.assert_allclose(positions[:, 0], [0.03, 0.06, 0.09, 0.1, 0.1])
    np.testing.assert_allclose(positions[:, 1:], 0.0)  # direction kept
    assert slowed == 3
    assert steps(positions, np.zeros(3)).max() <= 0.03 + 1e-12


def test_diagonal_step_keeps_its_direction():
    limits = VelocityLimits(max_linear_speed=1.0)
    positions, _, slowed, _ = limit_velocity(np.array([[0.3, 0.4, 0.0]]), IDENTITY[None], 0.1, limits,
                                             np.zeros(3), IDENTITY)
    np.testing.assert_allclose(positions[0], [0.06, 0.08, 0.0])
    assert slowed == 1


def test_rotation_steps_are_scaled_along_the_geodesic():
    limits = VelocityLimits(max_linear_speed=10.0, max_angular_speed=1.0)
    target = Rotation.from_rotvec([0.0, 0.0, 0.5]).as_quat()  # 0.5 rad about z in one 0.1 s step
    _, quaternions, _, slowed = limit_velocity(np.zeros((2, 3)), np.tile(target, (2, 1)), 0.1, limits,
                                               np.zeros(3), IDENTITY)
    rotvecs = Rotation.from_quat(quaternions).as_rotvec()
    np.testing.assert_allclose(rotvecs, [[0, 0, 0.1], [0, 0, 0.2]], atol=1e-12)  # same axis, 0.1 rad/step
    assert slowed == 2


def test_trajectory_within_limits_is_unchanged():
    rng = np.random.default_rng(3)
    positions = np.cumsum(rng.uniform(-0.005, 0.005, (20, 3)), axis=0)
    quaternions = Rotation.from_rotvec(np.cumsum(rng.uniform(-0.01, 0.01, (20, 3)), axis=0)).as_quat()
    result = SafetyFilter(WorkspaceBounds((-1, -1, -1), (1, 1, 1))).apply(
        positions, quaternions, 1 / 30, np.zeros(3), IDENTITY)
    assert not result.modified and result.summary() == "unchanged"
    np.testing.assert_allclose(result.positions, positions)
    np.testing.assert_allclose(result.quaternions, quaternions)


def test_filter_keeps_both_guarantees_on_random_trajectories():
    rng = np.random.default_rng(4)
    bounds = WorkspaceBounds((-0.3, -0.3, 0.0), (0.3, 0.3, 0.5))
    limits = VelocityLimits(max_linear_speed=0.5, max_angular_speed=1.5)
    safety = SafetyFilter(bounds, limits)
    period = 1 / 30
    for _ in range(50):
        start = rng.uniform(bounds.low, bounds.high)
        start_q = Rotation.random(random_state=rng.integers(1 << 31)).as_quat()
        positions = rng.uniform(-1, 1, (20, 3))
        quaternions = Rotation.random(20, random_state=rng.integers(1 << 31)).as_quat()
        result = safety.apply(positions, quaternions, period, start, start_q)
        assert bounds.contains(result.positions).all()
        assert steps(result.positions, start).max() <= limits.max_linear_speed * period * (1 + 1e-6)
        assert angles(result.quaternions, start_q).max() <= limits.max_angular_speed * period * (1 + 1e-6)
        assert result.clipped_waypoints == int((~bounds.contains(positions)).sum())
        assert "clipped to the workspace" in result.summary()


def test_start_outside_the_box_moves_back_slowly():
    bounds = WorkspaceBounds((0, 0, 0), (1, 1, 1))
    result = SafetyFilter(bounds, VelocityLimits(max_linear_speed=0.3)).apply(
        np.tile([0.5, 0.5, 0.5], (3, 1)), np.tile(IDENTITY, (3, 1)), 0.1, np.array([0.5, 0.5, 1.2]), IDENTITY)
    assert result.start_outside and "outside the workspace" in result.summary()
    np.testing.assert_allclose(result.positions[:, 2], [1.17, 1.14, 1.11])


def test_without_a_start_pose_the_first_waypoint_is_kept():
    result = SafetyFilter(limits=VelocityLimits(max_linear_speed=0.3)).apply(
        np.array([[0.0, 0.0, 0.5], [0.2, 0.0, 0.5]]), np.tile(IDENTITY, (2, 1)), 0.1)
    np.testing.assert_allclose(result.positions, [[0.0, 0.0, 0.5], [0.03, 0.0, 0.5]])


def test_latent_age_gate():
    gate = LatentAgeGate(max_latent_age=0.5)
    decision = gate.check(None, 10**9)
    assert not decision.allowed and "no goal latent" in decision.reason and gate.changed
    decision = gate.check(1_000_000_000, 1_200_000_000)
    assert decision.allowed and decision.age == pytest.approx(0.2) and gate.changed
    gate.check(1_000_000_000, 1_300_000_000)
    assert not gate.changed  # still allowed: nothing new to log
    decision = gate.check(1_000_000_000, 1_600_000_000)
    assert not decision.allowed and "0.600 s old, over max_latent_age 0.500 s" in decision.reason
    assert gate.changed
    decision = gate.check(2_000_000_000, 1_000_000_000)
    assert not decision.allowed and "in the future" in decision.reason
    assert gate.check(1_020_000_000, 1_000_000_000).allowed  # small skew tolerated
    assert LatentAgeGate(float("inf")).check(0, 10**18).allowed
    with pytest.raises(ValueError, match="max_latent_age must be > 0"):
        LatentAgeGate(0.0)
