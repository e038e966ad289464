"""System 1 with a camera policy (3D Diffuser Actor): organised clouds paired by stamp, the release's
CALVIN conventions (its Euler-angle matrices, angle differences added to the current angles), the
proprioception history, and a trajectory through the same safety filter as every System 1's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from openhelix_ros.system1.core import CameraFrameAssembler, System1Core
from openhelix_training import DiffuserActor
from openhelix_training.modeling_diffuser_actor import release_euler_to_matrix, release_matrix_to_euler


@pytest.fixture(scope="module")
def core():
    return System1Core.load("tiny-3dda", num_inference_steps=3)


def cameras(seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = {"static": (rng.random((200, 200, 3)) * 0.5).astype(np.float32),
           "gripper": (rng.random((84, 84, 3)) * 0.2).astype(np.float32)}
    rgb = {name: rng.integers(0, 256, v.shape, dtype=np.uint8) for name, v in xyz.items()}
    return xyz, rgb


def test_frames_pair_both_cameras_of_one_stamp_and_notice_a_reset():
    frames = CameraFrameAssembler(("static", "gripper"))
    a = np.zeros((2, 2, 3))
    assert frames.add("static", 10, a, a) == (None, False)
    assert frames.add("static", 20, a + 1, a) == (None, False)
    frame, reset = frames.add("gripper", 20, a + 2, a)
    assert not reset and frame[0]["static"][0, 0, 0] == 1 and frame[0]["gripper"][0, 0, 0] == 2
    assert frames.add("gripper", 10, a, a) == (None, True)  # earlier than the last frame: a reset
    with pytest.raises(ValueError, match="unknown camera 'left'"):
        frames.add("left", 30, a, a)


def test_the_release_reads_calvin_angles_as_rx_ry_rz():
    euler = np.array([[0.3, -0.4, 1.2], [3.0, 0.1, -2.0]])
    ours = release_euler_to_matrix(torch.tensor(euler)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_euler("XYZ", euler).as_matrix(), atol=1e-12)  # intrinsic XYZ
    assert not np.allclose(ours, Rotation.from_euler("xyz", euler).as_matrix(), atol=1e-3)  # not CALVIN's
    np.testing.assert_allclose(release_matrix_to_euler(torch.tensor(ours)).numpy(), euler, atol=1e-9)


def test_a_plan_is_the_predicted_differences_added_to_the_current_pose(core):
    xyz, rgb = cameras()
    position, quaternion = np.array([0.1, -0.05, 0.5]), Rotation.from_euler("xyz", [3.1, 0.05, 1.4]).as_quat()
    latent = np.random.default_rng(1).normal(size=core.latent_dim).astype(np.float32)
    plan = core.plan(xyz, rgb, position, quaternion, 1.0, latent)
    steps = core.model.config.trajectory_length
    assert plan.positions.shape == (steps, 3) and plan.quaternions.shape == (steps, 4)  # nothing dropped
    assert set(np.unique(plan.gripper)) <= {-1.0, 1.0}
    # the same call through the model: positions are the current one plus the relative prediction
    generator = torch.Generator().manual_seed(core.seed)
    euler = Rotation.from_quat(quaternion).as_euler("xyz")
    direct = core.model.predict_calvin([(rgb[n], xyz[n]) for n in core.camera_names], [(position, euler)], latent,
                                       generator=generator)
    np.testing.assert_allclose(plan.raw_positions, direct["positions"], atol=1e-6)
    lo, hi = core.model.config.location_bounds
    assert np.all(direct["positions"] - position >= np.array(lo) - 1e-6)
    assert np.all(direct["positions"] - position <= np.array(hi) + 1e-6)
    expected = Rotation.from_euler("xyz", direct["euler"]).as_quat()
    dots = np.abs(np.sum(expected * plan.quaternions, axis=1))
    assert np.all(dots > 1 - 1e-6) or plan.safety.modified


def test_pixels_without_depth_and_bad_inputs(core):
    xyz, rgb = cameras()
    xyz["static"][:5] = np.nan
    latent = np.zeros(core.latent_dim, dtype=np.float32)
    plan = core.plan(xyz, rgb, np.array([0.1, 0.0, 0.5]), np.array([1.0, 0, 0, 0]), 1.0, latent)
    assert np.all(np.isfinite(plan.positions))
    xyz["gripper"][:] = np.nan
    with pytest.raises(ValueError, match="camera 'gripper': no pixel has a finite point"):
        core.plan(xyz, rgb, np.array([0.1, 0.0, 0.5]), np.array([1.0, 0, 0, 0]), 1.0, latent)
    xyz, rgb = cameras()
    with pytest.raises(ValueError, match="no organised cloud of camera 'gripper'"):
        core.plan({"static": xyz["static"]}, rgb, np.array([0.1, 0.0, 0.5]), np.array([1.0, 0, 0, 0]), 1.0, latent)
    with pytest.raises(ValueError, match="latent"):
        core.plan(xyz, rgb, np.array([0.1, 0.0, 0.5]), np.array([1.0, 0, 0, 0]), 1.0, latent[:10])


def test_a_history_policy_keeps_its_newest_poses_and_forgets_them_on_reset():
    three = System1Core(DiffuserActor.from_config("tiny-3dda", nhist=3), "tiny-3dda-nhist3", num_inference_steps=2)
    xyz, rgb = cameras()
    latent = np.zeros(three.latent_dim, dtype=np.float32)
    for x in (0.1, 0.2, 0.3, 0.4):
        three.plan(xyz, rgb, np.array([x, 0.0, 0.5]), np.array([1.0, 0, 0, 0]), 1.0, latent)
    assert [round(p[0], 3) for p, _ in three._history] == [0.2, 0.3, 0.4]
    three.reset_history()
    three.plan(xyz, rgb, np.array([0.5, 0.0, 0.5]), np.array([1.0, 0, 0, 0]), 1.0, latent)
    assert [round(p[0], 3) for p, _ in three._history] == [0.5]


def test_fewer_steps_than_the_release_sample_with_ddim():
    core = System1Core.load("tiny-3dda", num_inference_steps=3)
    assert (core.model.config.inference_scheduler, core.num_inference_steps) == ("ddim", 3)
    with pytest.raises(ValueError, match="num_inference_steps must be in 0..10"):
        System1Core.load("tiny-3dda", num_inference_steps=11)


def test_an_image_policy_plans_from_the_cameras_pixels_alone():
    """A 2D policy (DP-VLA, HiRT, DexVLA) reads each camera's colours and the pose: the points do not
    matter to it, the pixels do, and a missing camera is named."""
    from openhelix_training import System1

    torch.manual_seed(0)
    model = System1.from_config("tiny", scene_encoder="image")
    with torch.no_grad():
        model.ada.weight.normal_(0, 0.05)  # open the AdaLN-zero gates so the scene reaches the output
    image_core = System1Core(model, "tiny-image", num_inference_steps=3)
    assert image_core.reads_cameras and image_core.reads_images and image_core.camera_names == ("static", "gripper")
    xyz, rgb = cameras()
    position, quaternion = np.array([0.1, -0.05, 0.5]), Rotation.from_euler("xyz", [3.1, 0.05, 1.4]).as_quat()
    latent = np.ones(32, np.float32)
    plan = image_core.plan(xyz, rgb, position, quaternion, 1.0, latent)
    assert plan.positions.shape == (19, 3)  # waypoint 0, the current pose, dropped as for every System1
    moved = {name: v + 1.0 for name, v in xyz.items()}
    np.testing.assert_array_equal(image_core.plan(moved, rgb, position, quaternion, 1.0, latent).positions,
                                  plan.positions)
    other = {name: 255 - v for name, v in rgb.items()}
    assert not np.allclose(image_core.plan(xyz, other, position, quaternion, 1.0, latent).positions, plan.positions)
    with pytest.raises(ValueError, match="no image of camera 'gripper'"):
        image_core.plan(xyz, {"static": rgb["static"]}, position, quaternion, 1.0, latent)
