"""The ROS-free cores of the system1 and system2 nodes, driven directly with the tiny models: the Asy(N)
rule, input checks, latent selection and the age gate, and trajectories that respect the safety box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.safety import SafetyFilter, VelocityLimits, WorkspaceBounds
from openhelix_ros.common.timing import encodes_step, latent_step_for_plan, stamp_to_step
from openhelix_ros.system1.core import (
    LatentRecord,
    LatentSelector,
    System1Core,
    check_latent_dims,
    gripper_openness_from_width,
    proprio_from_pose,
)
from openhelix_ros.system2.core import (
    LockstepImages,
    System2Core,
    check_image,
    check_instruction,
)

STEP_NS = 1_000_000_000 / 30


def step_stamp(step: int) -> int:
    return int(round(step * STEP_NS))


# ----- Asy(N) ---------------------------------------------------------------------------------------


def image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def test_lockstep_images_are_those_of_each_period_start_each_once_per_instruction():
    images = LockstepImages(3)
    for step in range(7):
        assert images.offer(step_stamp(step), step, image(step), 0.0) == []
    assert len(images) == 3  # steps 0, 3, 6
    assert [images.pop(1).step for _ in range(3)] == [0, 3, 6] and images.pop(1) is None
    # The bridge re-sends step 6 while it waits: already encoded for instruction 1, so not again ...
    images.offer(step_stamp(6), 6, image(6), 1.0)
    images.offer(step_stamp(6), 6, image(6), 2.0)  # ... and queued once, however often it comes
    assert len(images) == 1 and images.pop(1) is None
    # ... but a new instruction on the same observation gets its own latent.
    images.offer(step_stamp(6), 6, image(6), 3.0)
    assert images.pop(2).step == 6


def test_a_period_whose_own_image_never_came_is_encoded_from_its_first_image_that_does():
    images = LockstepImages(10)
    # System 2 came up while the bridge held step 3 (and re-sent it): step 0 never arrives.
    notes = images.offer(step_stamp(3), 3, image(3), 0.0)
    assert len(notes) == 1 and "step 0 never arrived" in notes[0] and "not exact" in notes[0]
    assert images.offer(step_stamp(3), 3, image(3), 1.0) == []  # the re-send: no second stand-in
    for step in range(4, 10):
        images.offer(step_stamp(step), step, image(step), 0.0)
    stand_in = images.pop(1)
    assert stand_in.step == 3 and stand_in.stand_in and images.pop(1) is None
    images.offer(step_stamp(10), 10, image(10), 0.0)  # the next period starts normally
    following = images.pop(1)
    assert following.step == 10 and not following.stand_in


def test_a_reset_starts_a_new_episode_whose_step_0_is_encoded_again():
    images = LockstepImages(10)
    images.offer(step_stamp(0), 0, image(0), 0.0)
    assert images.pop(1).step == 0
    images.offer(step_stamp(4), 4, image(4), 0.0)  # inside period 0: nothing to encode
    assert images.pop(1) is None
    images.offer(step_stamp(0), 0, image(7), 0.0)  # reset: same stamp, another scene
    assert images.pop(1).step == 0
    images.offer(step_stamp(0), 0, image(7), 0.0)  # reset to the very same scene: the latent is the same
    assert images.pop(1) is None


def test_lockstep_images_drop_the_oldest_when_far_behind_and_say_so():
    images = LockstepImages(0, capacity=2)
    images.offer(step_stamp(0), 0, image(0), 0.0)
    images.offer(step_stamp(1), 1, image(1), 0.0)
    notes = images.offer(step_stamp(2), 2, image(2), 0.0)
    assert notes and "2 images behind" in notes[0] and "step 0" in notes[0]
    assert [images.pop(1).step, images.pop(1).step] == [1, 2]


def test_asy_n_latent_of_the_previous_period():
    # N = 3: steps 0-5 use step 0's latent (first period and the one after it), 6-8 use step 3's, ...
    assert [latent_step_for_plan(t, 3) for t in range(12)] == [0, 0, 0, 0, 0, 0, 3, 3, 3, 6, 6, 6]
    # Ages from the second period on are between N and 2N - 1 steps.
    ages = [t - latent_step_for_plan(t, 5) for t in range(10, 200)]
    assert min(ages) == 5 and max(ages) == 9
    assert [latent_step_for_plan(t, 0) for t in range(5)] == [0, 1, 2, 3, 4]  # synchronous
    assert [t for t in range(10) if encodes_step(t, 3)] == [0, 3, 6, 9]
    assert all(encodes_step(t, 0) for t in range(10))
    with pytest.raises(ValueError):
        latent_step_for_plan(4, -1)


def test_stamps_convert_to_steps_exactly():
    assert [stamp_to_step(step_stamp(t)) for t in range(0, 10000, 97)] == list(range(0, 10000, 97))
    assert stamp_to_step(0) == 0


# ----- System 2 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def system2():
    return System2Core.load("tiny")


def test_system2_encodes_a_deterministic_latent(system2):
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    first = system2.encode(image, "open the drawer")
    again = system2.encode(image, "  open the drawer ")
    other = system2.encode(image, "push the red block left")
    assert first.latent.shape == (system2.latent_dim,) == (32,)
    assert np.all(np.isfinite(first.latent)) and first.inference_time > 0
    np.testing.assert_array_equal(first.latent, again.latent)
    assert first.instruction == "open the drawer"
    assert not np.allclose(first.latent, other.latent)
    rgba = np.concatenate([image, np.full((48, 64, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(system2.encode(rgba, "open the drawer").latent, first.latent)


def test_system2_refuses_bad_inputs_clearly(system2):
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="instruction is empty"):
        system2.encode(image, "   ")
    with pytest.raises(ValueError, match=r"HxWx3 RGB image, got shape \(32, 32\)"):
        system2.encode(np.zeros((32, 32), np.uint8), "open the drawer")
    with pytest.raises(ValueError, match="8-bit RGB"):
        check_image(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="too small"):
        check_image(np.zeros((1, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="must be a string"):
        check_instruction(None)
    with pytest.raises(ValueError, match="unknown System 2 configuration 'huge'"):
        System2Core.load("huge")
    with pytest.raises(ValueError, match="does not exist"):
        System2Core.load(checkpoint="/nonexistent/run")


def test_system2_loads_a_checkpoint_directory(system2, tmp_path):
    system2.model.save_pretrained(tmp_path / "system2")
    loaded = System2Core.load(checkpoint=str(tmp_path))  # a training-checkpoint layout: system2/ inside
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.encode(image, "lift the red block").latent,
                               system2.encode(image, "lift the red block").latent, atol=1e-6)
    assert loaded.model_id == str(tmp_path)


# ----- System 1 -------------------------------------------------------------------------------------


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
