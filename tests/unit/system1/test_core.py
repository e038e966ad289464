"""System 1's ROS-free core (system1/core.py) with the tiny model: input checks, latent selection
and the age gate, and trajectories that respect the safety box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.safety import SafetyFilter, VelocityLimits, WorkspaceBounds
from openhelix_ros.system1.core import (
    LatentRecord,
    LatentSelector,
    System1Core,
    check_latent_dims,
    gripper_openness_from_width,
    proprio_from_pose,
)

STEP_NS = 1_000_000_000 / 30


def step_stamp(step: int) -> int:
    return int(round(step * STEP_NS))


# ----- Asy(N) ---------------------------------------------------------------------------------------


def scene(n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([-0.4, -0.4, 0.0], [0.4, 0.3, 0.3], (n, 3)).astype(np.float32)
    return xyz, rng.integers(0, 256, (n, 3), dtype=np.uint8)


START_POSITION = np.array([0.05, -0.1, 0.35])
START_QUATERNION = Rotation.from_euler("xyz", [np.pi, 0, np.pi / 2]).as_quat()


@pytest.fixture(scope="module")
def system1():
    return System1Core.load("tiny", num_inference_steps=3)


def test_system1_plans_absolute_poses_inside_the_safety_limits(system1):
    xyz, rgb = scene()
    latent = np.random.default_rng(2).normal(size=32).astype(np.float32)
    plan = system1.plan(xyz, rgb, START_POSITION, START_QUATERNION, 1.0, latent)
    n = system1.model.config.trajectory_length - 1  # waypoint 0 (the current pose) dropped
    assert plan.positions.shape == (n, 3) and plan.quaternions.shape == (n, 4) and plan.gripper.shape == (n,)
    assert np.all(np.isfinite(plan.positions)) and np.allclose(np.linalg.norm(plan.quaternions, axis=1), 1)
    assert set(np.unique(plan.gripper)) <= {-1.0, 1.0}
    assert np.all(WorkspaceBounds().contains(plan.positions))
    steps = np.diff(np.vstack([START_POSITION, plan.positions]), axis=0)
    assert np.linalg.norm(steps, axis=1).max() <= VelocityLimits().max_linear_speed * plan.period + 1e-9
    assert plan.period == pytest.approx(1 / 30)
    # Deterministic for a seed; the same prediction comes back relative to a moved start pose.
    again = system1.plan(xyz, rgb, START_POSITION, START_QUATERNION, 1.0, latent)
    np.testing.assert_array_equal(plan.positions, again.positions)


def test_system1_clips_to_a_small_workspace(system1):
    box = WorkspaceBounds((0.0, -0.12, 0.33), (0.06, -0.08, 0.37))
    core = System1Core(system1.model, "tiny", safety=SafetyFilter(box, VelocityLimits(0.05, 0.5)),
                       num_inference_steps=3)
    xyz, rgb = scene()
    plan = core.plan(xyz, rgb, START_POSITION, START_QUATERNION, 0.0, np.ones(32, np.float32))
    assert np.all(box.contains(plan.positions))
    steps = np.linalg.norm(np.diff(np.vstack([START_POSITION, plan.positions]), axis=0), axis=1)
    assert steps.max() <= 0.05 / 30 + 1e-9


def test_system1_refuses_bad_inputs_clearly(system1):
    xyz, rgb = scene()
    latent = np.zeros(32, np.float32)
    with pytest.raises(ValueError, match="latent size mismatch: System 1 \\(tiny\\) is conditioned on 32-D"):
        system1.plan(xyz, rgb, START_POSITION, START_QUATERNION, 1.0, np.zeros(512, np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        system1.check_latent(np.full(32, np.nan, np.float32))
    with pytest.raises(ValueError, match="no rgb field"):
        system1.plan(xyz, None, START_POSITION, START_QUATERNION, 1.0, latent)
    with pytest.raises(ValueError, match="no finite point"):
        system1.plan(np.full((10, 3), np.nan, np.float32), rgb[:10], START_POSITION, START_QUATERNION, 1.0, latent)
    with pytest.raises(ValueError, match="orientation"):
        system1.plan(xyz, rgb, START_POSITION, [0, 0, 0, 0], 1.0, latent)
    # Some NaN points are dropped, not fatal.
    xyz_nan = xyz.copy()
    xyz_nan[::3] = np.nan
    assert np.all(np.isfinite(system1.plan(xyz_nan, rgb, START_POSITION, START_QUATERNION, 1.0, latent).positions))
    with pytest.raises(ValueError, match="latent size mismatch"):
        check_latent_dims(32, 512)
    check_latent_dims(512, 512)


def test_system1_needs_a_point_cloud_policy():
    from openhelix_training import System1

    with pytest.raises(ValueError, match="scene_encoder='camera'"):
        System1Core(System1.from_config("tiny"), "tiny")
    with pytest.raises(ValueError, match="unknown System 1 configuration"):
        System1Core.load("huge")


def test_system1_loads_a_checkpoint_directory(system1, tmp_path):
    system1.model.save_pretrained(tmp_path / "system1")
    loaded = System1Core.load(checkpoint=str(tmp_path), num_inference_steps=3)
    xyz, rgb = scene(seed=4)
    latent = np.linspace(-1, 1, 32).astype(np.float32)
    np.testing.assert_allclose(loaded.plan(xyz, rgb, START_POSITION, START_QUATERNION, 1.0, latent).positions,
                               system1.plan(xyz, rgb, START_POSITION, START_QUATERNION, 1.0, latent).positions,
                               atol=1e-5)


def test_untrained_system1_weights_follow_the_seed_and_leave_the_global_rng_alone():
    import torch

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = System1Core.load("tiny", seed=5).model.state_dict()
    assert torch.equal(torch.rand(3), expected_next)  # building the model drew nothing from the caller's RNG
    again = System1Core.load("tiny", seed=5).model.state_dict()
    other = System1Core.load("tiny", seed=6).model.state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert any(not torch.equal(first[name], other[name]) for name in first)


def test_proprio_from_pose_matches_the_training_layout():
    from openhelix_training import proprio_from_robot_obs

    euler = np.array([3.0, -0.2, 1.4])
    robot_obs = np.zeros(15)
    robot_obs[:3], robot_obs[3:6], robot_obs[14] = START_POSITION, euler, -1.0
    quaternion = Rotation.from_euler("xyz", euler).as_quat()  # CALVIN's euler is extrinsic xyz
    np.testing.assert_allclose(proprio_from_pose(START_POSITION, quaternion, 0.0), proprio_from_robot_obs(robot_obs),
                               atol=1e-6)
    assert gripper_openness_from_width(0.08, 0.07) == 1.0 and gripper_openness_from_width(0.05, 0.07) == 0.0


# ----- latent choice and age gate -------------------------------------------------------------------


def record(step: int, sequence: int, received: float = 0.0) -> LatentRecord:
    return LatentRecord(latent=np.full(4, step, np.float32), sequence=sequence, stamp_ns=step_stamp(step) + 5,
                        observation_stamp_ns=step_stamp(step), received=received)


def test_lockstep_selector_waits_for_the_exact_asy_latent():
    selector = LatentSelector("lockstep", latent_period_steps=2, max_latent_age=1.0)
    choice = selector.choose(step_stamp(0))
    assert choice.wait and choice.record is None and choice.required_step == 0
    selector.add(record(0, 1))
    assert selector.choose(step_stamp(3)).record.sequence == 1  # steps 0-3 use step 0's latent
    choice = selector.choose(step_stamp(4))
    assert choice.wait and choice.required_step == 2  # step 4 needs step 2's, not yet here
    fallback = selector.choose(step_stamp(4), fallback=True)  # after the caller's bounded wait
    assert fallback.record.sequence == 1 and not fallback.exact and "not exact" in fallback.reason
    selector.add(record(2, 2))
    assert selector.choose(step_stamp(5)).record.sequence == 2
    selector.add(record(6, 3))  # the latent of step 4 was lost: step 6 came first
    lost = selector.choose(step_stamp(6))
    assert not lost.wait and not lost.exact and lost.record.sequence == 2  # no pointless wait
    assert selector.choose(step_stamp(9)).record.sequence == 3


def test_lockstep_selector_goes_on_with_a_younger_latent_when_system2_missed_the_first_images():
    selector = LatentSelector("lockstep", latent_period_steps=2)
    selector.add(record(2, 1))  # System 2 came up after step 0's image
    early = selector.choose(step_stamp(1))  # needs step 0's, known lost; step 2's is from the future
    assert early.record is None and not early.wait
    choice = selector.choose(step_stamp(3))  # needs step 0's, lost: step 2's, younger than Asy(2) wants
    assert not choice.wait and choice.record.sequence == 1 and not choice.exact and "not exact" in choice.reason


def test_realtime_selector_takes_the_newest_and_the_gate_stops_stale_latents():
    selector = LatentSelector("realtime", max_latent_age=0.5)
    assert selector.choose(0).record is None
    decision = selector.check_age(None, 10**9)
    assert not decision.allowed and "no goal latent" in decision.reason
    selector.add(record(30, 1))
    selector.add(record(33, 2))
    newest = selector.choose(step_stamp(40)).record
    assert newest.sequence == 2
    assert selector.check_age(newest, step_stamp(33) + 400_000_000).allowed
    assert selector.gate.changed
    stale = selector.check_age(newest, step_stamp(33) + 600_000_000)
    assert not stale.allowed and "over max_latent_age" in stale.reason and selector.gate.changed
    selector.check_age(newest, step_stamp(33) + 700_000_000)
    assert not selector.gate.changed  # the node logs transitions only


def test_history_forgets_latents_of_a_reset_world():
    selector = LatentSelector("lockstep", latent_period_steps=0)
    selector.add(record(0, 1, received=1.0))
    selector.add(record(1, 2, received=2.0))
    selector.add(record(0, 3, received=5.0))  # same step, new episode: replaces the old one
    assert selector.choose(step_stamp(0)).record.sequence == 3
    assert selector.history.forget_received_before(3.0) == 1
    assert selector.choose(step_stamp(1)).wait


def test_temporal_ensemble_averages_what_overlapping_plans_say_of_each_slot():
    from openhelix_ros.system1.core import TemporalEnsemble

    period = 1.0 / 30.0
    ensemble = TemporalEnsemble(plans=3, decay=0.5, waypoint_period=period)
    step = int(round(period * 1e9))
    identity = np.tile([0.0, 0.0, 0.0, 1.0], (4, 1))
    first = ensemble.apply(0, np.zeros((4, 3)), identity, np.ones(4))
    np.testing.assert_array_equal(first[0], np.zeros((4, 3)))  # alone: as predicted
    # The next plan, one slot later, predicts x = 1 everywhere: its slots 1..3 overlap the first plan's.
    positions, quaternions, gripper = ensemble.apply(step, np.ones((4, 3)), -identity, -np.ones(4))
    old, new = 1.0, np.exp(-0.5)  # ACT: the oldest prediction weighs exp(0)
    np.testing.assert_allclose(positions[:3, 0], new / (old + new))
    assert positions[3, 0] == 1.0  # slot 4: only the new plan reaches it
    np.testing.assert_allclose(np.abs(quaternions[:, 3]), 1.0)  # q and -q are one rotation, not a cancellation
    assert gripper[:3].tolist() == [1.0, 1.0, 1.0] and gripper[3] == -1.0  # the heavier, older vote wins
    # The same observation planned again replaces its earlier plan rather than forgetting the others.
    replanned = ensemble.apply(step, np.full((4, 3), 2.0), -identity, -np.ones(4))
    np.testing.assert_allclose(replanned[0][:3, 0], 2 * new / (old + new))
    # The clock going back (a reset world) forgets the old plans, and so does reset() (a new episode).
    again = ensemble.apply(0, np.full((4, 3), 5.0), identity, np.ones(4))
    np.testing.assert_array_equal(again[0], np.full((4, 3), 5.0))
    ensemble.reset()
    fresh = ensemble.apply(step, np.full((4, 3), 7.0), identity, np.ones(4))
    np.testing.assert_array_equal(fresh[0], np.full((4, 3), 7.0))
    with pytest.raises(ValueError, match="at least 1 plan"):
        TemporalEnsemble(plans=0)


def test_a_core_with_an_ensemble_smooths_plans_through_the_safety_filter(system1):
    from openhelix_ros.system1.core import TemporalEnsemble

    xyz, rgb = scene()
    latent = np.ones(32, np.float32)
    plain = system1.plan(xyz, rgb, START_POSITION, START_QUATERNION, 1.0, latent, stamp_ns=0)
    system1.ensemble = TemporalEnsemble(8, 0.1, system1.waypoint_period)
    try:
        a = system1.plan(xyz, rgb, START_POSITION, START_QUATERNION, 1.0, latent, stamp_ns=0)
        np.testing.assert_allclose(a.positions, plain.positions)  # one plan: nothing to average
        b = system1.plan(xyz, rgb, START_POSITION + [0.02, 0, 0], START_QUATERNION, 1.0, latent,
                         stamp_ns=33_333_333)
        shifted = system1.plan(xyz, rgb, START_POSITION + [0.02, 0, 0], START_QUATERNION, 1.0, latent)
        assert not np.allclose(b.positions, shifted.positions)  # the overlap pulled it toward the first plan
        assert b.safety is not None
    finally:
        system1.ensemble = None
