"""ROS messages <-> numpy: round trips, the conventions stated in common/conversions.py, and bad input."""

from __future__ import annotations

import array

import numpy as np
import pytest
import transforms3d
from geometry_msgs.msg import Pose
from sensor_msgs.msg import Image, JointState, PointCloud2, PointField

from openhelix_msgs.msg import GoalLatent
from openhelix_ros.common import conversions as cv
from openhelix_training.goal import CoarseActions, LatentGoal


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_quaternions(rng, n):
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


# ----- point clouds ------------------------------------------------------------------------------

def test_pointcloud2_round_trip_xyz_rgb(rng):
    xyz = rng.uniform(-1, 1, (2000, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (2000, 3), dtype=np.uint8)
    message = cv.points_to_pointcloud2(xyz, rgb, stamp=1_500_000_123)
    assert message.header.frame_id == "world"
    assert [(f.name, f.offset, f.datatype, f.count) for f in message.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1)]
    assert (message.height, message.width, message.point_step, message.row_step) == (1, 2000, 16, 32000)
    assert message.is_dense and not message.is_bigendian
    cloud = cv.pointcloud2_to_points(message)
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    assert (cloud.frame_id, cloud.stamp_ns, cloud.dropped) == ("world", 1_500_000_123, 0)


def test_an_organised_cloud_keeps_every_pixel_in_row_major_order(rng):
    xyz = rng.uniform(-1, 1, (30, 40, 3)).astype(np.float32)
    xyz[3, 7] = np.nan  # a pixel without depth
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    message = cv.organized_points_to_pointcloud2(xyz, rgb, stamp=7)
    assert (message.height, message.width, message.row_step) == (30, 40, 40 * 16)
    assert not message.is_dense
    back, colours, missing = cv.pointcloud2_to_organized(message)
    np.testing.assert_array_equal(back, xyz)  # NaN in place
    np.testing.assert_array_equal(colours, rgb)
    assert missing == 1
    assert cv.pointcloud2_to_points(message).dropped == 1  # the unorganised reader drops it
    with pytest.raises(ValueError, match="not organised"):
        cv.pointcloud2_to_organized(cv.points_to_pointcloud2(xyz[0], rgb[0]))
    with pytest.raises(ValueError, match="no rgb field"):
        flat = cv.points_to_pointcloud2(xyz.reshape(-1, 3)[:40])
        flat.height, flat.width, flat.row_step = 2, 20, 20 * 12
        cv.pointcloud2_to_organized(flat)
    with pytest.raises(ValueError, match=r"colours must have shape \(30, 40, 3\)"):
        cv.organized_points_to_pointcloud2(xyz, rgb[:, :20])


def test_rgb_packing_is_pcls_0x00rrggbb_float():
    packed = cv.pack_rgb(np.array([[255, 0, 0], [0, 128, 0], [1, 2, 3]], dtype=np.uint8))
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0xFF0000, 0x008000, 0x010203]


def test_pointcloud2_without_colour(rng):
    xyz = rng.uniform(-1, 1, (10, 3)).astype(np.float32)
    cloud = cv.pointcloud2_to_points(cv.points_to_pointcloud2(xyz))
    assert cloud.rgb is None
    np.testing.assert_array_equal(cloud.xyz, xyz)


def _foreign_cloud(points: np.ndarray, fields, point_step, height=1, row_padding=0, bigendian=False):
    """A cloud laid out as some other driver might: given fields, padding, byte order."""
    width = len(points) // height
    rows = points.tobytes()
    if row_padding:
        row_bytes = width * point_step
        rows = b"".join(rows[r * row_bytes:(r + 1) * row_bytes] + b"\0" * row_padding for r in range(height))
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=bigendian,
                       point_step=point_step, row_step=width * point_step + row_padding,
                       data=array.array("B", rows), is_dense=False)


def test_pointcloud2_reads_other_layouts(rng):
    # float64 coordinates in a different order, an intensity field, uint32 rgba, organised 2 rows
    # with row padding, big-endian.
    dtype = np.dtype({"names": ["z", "intensity", "x", "y", "rgba"],
                      "formats": [">f8", ">f4", ">f8", ">f8", ">u4"],
                      "offsets": [0, 8, 12, 20, 28], "itemsize": 36})
    points = np.zeros(6, dtype=dtype)
    xyz = rng.uniform(-1, 1, (6, 3))
    points["x"], points["y"], points["z"] = xyz.T
    points["rgba"] = [0xFF102030] * 6
    fields = [PointField(name="z", offset=0, datatype=PointField.FLOAT64, count=1),
              PointField(name="intensity", offset=8, datatype=PointField.FLOAT32, count=1),
              PointField(name="x", offset=12, datatype=PointField.FLOAT64, count=1),
              PointField(name="y", offset=20, datatype=PointField.FLOAT64, count=1),
              PointField(name="rgba", offset=28, datatype=PointField.UINT32, count=1)]
    message = _foreign_cloud(points, fields, 36, height=2, row_padding=5, bigendian=True)
    cloud = cv.pointcloud2_to_points(message)
    np.testing.assert_allclose(cloud.xyz, xyz.astype(np.float32))
    assert cloud.rgb.tolist() == [[0x10, 0x20, 0x30]] * 6


def test_pointcloud2_missing_fields_are_named():
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="intensity", offset=4, datatype=PointField.FLOAT32, count=1)]
    message = PointCloud2(height=1, width=1, fields=fields, point_step=8, row_step=8,
                          data=array.array("B", bytes(8)))
    with pytest.raises(ValueError, match=r"lacks field\(s\) y, z"):
        cv.pointcloud2_to_points(message)


def test_pointcloud2_nan_points_dropped_or_rejected(rng):
    xyz = rng.uniform(-1, 1, (5, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    message = cv.points_to_pointcloud2(xyz, rgb)
    data = np.frombuffer(message.data, dtype=np.float32).copy().reshape(5, 4)
    data[1, 0] = np.nan
    data[3, 2] = np.inf
    message.data = array.array("B", data.tobytes())
    cloud = cv.pointcloud2_to_points(message)
    assert cloud.dropped == 2
    np.testing.assert_array_equal(cloud.xyz, xyz[[0, 2, 4]])
    np.testing.assert_array_equal(cloud.rgb, rgb[[0, 2, 4]])
    with pytest.raises(ValueError, match="2 of 5 points with NaN"):
        cv.pointcloud2_to_points(message, nan_policy="reject")


def test_pointcloud2_refuses_to_publish_nan_and_short_buffers(rng):
    xyz = rng.uniform(-1, 1, (4, 3))
    xyz[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 of 4 points with NaN"):
        cv.points_to_pointcloud2(xyz)
    message = cv.points_to_pointcloud2(rng.uniform(-1, 1, (4, 3)))
    message.data = message.data[:-1]
    with pytest.raises(ValueError, match="data has 47 bytes"):
        cv.pointcloud2_to_points(message)
    with pytest.raises(ValueError, match="must have shape"):
        cv.points_to_pointcloud2(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="uint8"):
        cv.points_to_pointcloud2(np.zeros((3, 3)), np.zeros((3, 3)))


# ----- images and camera info ----------------------------------------------------------------------

def test_rgb_and_depth_images_round_trip(rng):
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    message = cv.rgb_to_image(rgb, "static_camera", stamp=42)
    assert (message.encoding, message.step, message.height, message.width) == ("rgb8", 21, 6, 7)
    np.testing.assert_array_equal(cv.image_to_array(message), rgb)
    depth = rng.uniform(0.2, 3.0, (6, 7)).astype(np.float32)
    depth[0, 0] = np.nan  # no reading (REP 118)
    message = cv.depth_to_image(depth, "static_camera")
    assert (message.encoding, message.step, message.is_bigendian) == ("32FC1", 28, 0)
    np.testing.assert_array_equal(cv.image_to_array(message), depth)


def test_image_with_row_padding_and_bgr(rng):
    bgr = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    padded = np.zeros((3, 16), dtype=np.uint8)
    padded[:, :12] = bgr.reshape(3, 12)
    message = Image(height=3, width=4, encoding="bgr8", step=16, data=array.array("B", padded.tobytes()))
    np.testing.assert_array_equal(cv.image_to_array(message), bgr[..., ::-1])


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        cv.image_to_array(Image(height=1, width=1, encoding="yuv422", step=2, data=array.array("B", b"ab")))
    with pytest.raises(ValueError, match="needs 12"):
        cv.image_to_array(Image(height=2, width=2, encoding="rgb8", step=6, data=array.array("B", bytes(6))))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        cv.rgb_to_image(np.zeros((2, 2, 3), dtype=np.float32), "c")


def test_camera_info_from_intrinsics():
    k = np.array([[200.0, 0, 100], [0, 210.0, 90], [0, 0, 1]])
    message = cv.camera_info_to_msg(k, 200, 180, "static_camera")
    assert message.k.tolist() == k.ravel().tolist()
    assert message.p.tolist() == [200, 0, 100, 0, 0, 210, 90, 0, 0, 0, 1, 0]
    assert message.r.tolist() == np.eye(3).ravel().tolist()
    assert (message.width, message.height, message.distortion_model) == (200, 180, "plumb_bob")
    k_back, width, height = cv.camera_info_from_msg(message)
    np.testing.assert_array_equal(k_back, k)
    with pytest.raises(ValueError, match="pinhole"):
        cv.camera_info_to_msg(np.eye(3) * 0, 2, 2, "c")


# ----- quaternions, poses, trajectories --------------------------------------------------------------

def test_quaternion_order_against_transforms3d(rng):
    for q_xyzw in random_quaternions(rng, 20):
        q_wxyz = cv.quat_xyzw_to_wxyz(q_xyzw)
        np.testing.assert_allclose(cv.quaternions_to_matrices(q_xyzw[None])[0], transforms3d.quaternions.quat2mat(q_wxyz),
                                   atol=1e-12)
        np.testing.assert_allclose(cv.quat_wxyz_to_xyzw(q_wxyz), q_xyzw)
    # A quarter turn about z: (x, y, z, w) = (0, 0, sin 45, cos 45) takes x to y.
    matrix = cv.quaternions_to_matrices(np.array([[0, 0, np.sqrt(0.5), np.sqrt(0.5)]]))[0]
    np.testing.assert_allclose(matrix @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_pose_round_trip_and_bad_poses(rng):
    q = random_quaternions(rng, 1)[0]
    pose = cv.pose_to_msg([0.1, -0.2, 0.3], q * 2.0)  # normalised on the way
    position, quaternion = cv.pose_from_msg(pose)
    np.testing.assert_allclose(position, [0.1, -0.2, 0.3])
    np.testing.assert_allclose(quaternion, q)
    stamped = cv.pose_stamped_to_msg(position, quaternion, stamp=3_000_000_001)
    assert stamped.header.stamp.sec == 3 and stamped.header.stamp.nanosec == 1
    assert cv.pose_stamped_from_msg(stamped)[2:] == ("world", 3_000_000_001)
    bad = Pose()
    bad.orientation.w = 0.0
    with pytest.raises(ValueError, match="zero length"):
        cv.pose_from_msg(bad)
    bad.orientation.w = 1.0
    bad.position.x = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        cv.pose_from_msg(bad)


def test_trajectory_round_trip_quaternions_and_matrices(rng):
    n = 20
    positions = rng.uniform(-0.5, 0.5, (n, 3))
    quaternions = random_quaternions(rng, n)
    quaternions[quaternions[:, 3] < 0] *= -1
    gripper = np.where(rng.uniform(size=n) > 0.5, 1.0, -1.0)
    message = cv.trajectory_to_msg(positions, quaternions, gripper, 1 / 30, sequence=5, latent_sequence=3,
                                   latent_stamp=7_000_000_000, stamp=8_000_000_000, inference_time=0.012)
    back = cv.trajectory_from_msg(message)
    np.testing.assert_allclose(back.positions, positions)
    np.testing.assert_allclose(back.quaternions, quaternions)
    np.testing.assert_array_equal(back.gripper, gripper)
    assert back.period == pytest.approx(1 / 30, abs=1e-9)
    assert (back.sequence, back.latent_sequence, back.latent_stamp_ns, back.stamp_ns) == (
        5, 3, 7_000_000_000, 8_000_000_000)
    assert back.inference_time == pytest.approx(0.012)
    from_matrices = cv.trajectory_to_msg(positions, cv.quaternions_to_matrices(quaternions), gripper, 0.1)
    np.testing.assert_allclose(cv.trajectory_from_msg(from_matrices).quaternions, quaternions, atol=1e-12)
    np.testing.assert_allclose(back.rotation_matrices, cv.quaternions_to_matrices(quaternions))


@pytest.mark.parametrize("mutate, error", [
    (lambda p, q, g, t: (p[:0], q[:0], g[:0], t), "empty"),
    (lambda p, q, g, t: (p, q, g[:-1], t), "3 poses but 2 gripper"),
    (lambda p, q, g, t: (np.where(np.arange(3)[:, None] == 1, np.nan, p), q, g, t), r"waypoint\(s\) \[1\]"),
    (lambda p, q, g, t: (p, q * 0, g, t), "zero length"),
    (lambda p, q, g, t: (p, q, g, 0.0), "period must be > 0"),
    (lambda p, q, g, t: (p, q[:, :3], g, t), "orientations must be"),
    (lambda p, q, g, t: (p, np.tile(np.diag([1.0, 1.0, -1.0]), (3, 1, 1)), g, t), "not rotation matrices"),
])
def test_bad_trajectories_are_refused(mutate, error):
    p, q, g, t = np.zeros((3, 3)), np.tile([0.0, 0, 0, 1], (3, 1)), np.ones(3), 0.1
    with pytest.raises(ValueError, match=error):
        cv.trajectory_to_msg(*mutate(p, q, g, t))


def test_trajectory_from_msg_refuses_what_a_bad_publisher_sends():
    message = cv.trajectory_to_msg(np.zeros((2, 3)), np.tile([0.0, 0, 0, 1], (2, 1)), np.ones(2), 0.1)
    message.poses[1].position.z = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite values at waypoint\(s\) \[1\]"):
        cv.trajectory_from_msg(message)
    message = cv.trajectory_to_msg(np.zeros((2, 3)), np.tile([0.0, 0, 0, 1], (2, 1)), np.ones(2), 0.1)
    message.gripper = array.array("f", [1.0])
    with pytest.raises(ValueError, match="2 poses but 1 gripper"):
        cv.trajectory_from_msg(message)


# ----- joint states and time ---------------------------------------------------------------------------

def test_joint_state_helpers():
    message = cv.joint_state_to_msg(["b", "a", "c"], [2.0, 1.0, 3.0], velocities=[0.1, 0.2, 0.3])
    np.testing.assert_array_equal(cv.joint_positions_from_msg(message, ["a", "b"]), [1.0, 2.0])
    with pytest.raises(ValueError, match="lacks joint"):
        cv.joint_positions_from_msg(message, ["a", "d"])
    message.position[2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite position for c"):
        cv.joint_positions_from_msg(message, ["c"])
    with pytest.raises(ValueError, match="2 names but 1 positions"):
        cv.joint_positions_from_msg(JointState(name=["a", "b"], position=[1.0]), ["a"])
    with pytest.raises(ValueError, match="3 names but 2 velocities"):
        cv.joint_state_to_msg(["a", "b", "c"], [1, 2, 3], velocities=[1, 2])


def test_time_conversions():
    assert cv.stamp_to_ns(cv.ns_to_stamp(12_345_678_901)) == 12_345_678_901
    duration = cv.seconds_to_duration(1 / 30)
    assert (duration.sec, duration.nanosec) == (0, 33_333_333)
    with pytest.raises(ValueError):
        cv.seconds_to_duration(float("nan"))
    with pytest.raises(ValueError):
        cv.ns_to_stamp(-1)


# ----- bounds: what one message may make a node allocate -----------------------------------------

def test_messages_over_their_bounds_are_refused_before_anything_is_allocated():
    # The headers claim more than the bound; the data is tiny, so only the bound can refuse them (the
    # size check comes after it), and nothing the size of the claim is ever allocated.
    cloud = cv.points_to_pointcloud2(np.zeros((1, 3), dtype=np.float32))
    cloud.width, cloud.height = 5000, 5000
    with pytest.raises(ValueError, match=r"PointCloud2 of 5000x5000 has 25000000 points, more than the limit "
                                         r"of 16777216 \(MAX_CLOUD_POINTS\)"):
        cv.pointcloud2_to_points(cloud)
    wide = cv.points_to_pointcloud2(np.zeros((1, 3), dtype=np.float32))
    wide.fields = [PointField(name=f"f{i}", offset=0, datatype=PointField.FLOAT32, count=1) for i in range(65)]
    with pytest.raises(ValueError, match=r"has 65 fields, more than the limit of 64 \(MAX_POINT_FIELDS\)"):
        cv.pointcloud2_dtype(wide)
    image = Image(height=5000, width=5000, encoding="rgb8", step=15000, data=bytes(12))
    with pytest.raises(ValueError, match=r"image of 5000x5000 has 25000000 pixels, more than the limit of "
                                         r"16777216 \(MAX_IMAGE_PIXELS\)"):
        cv.image_to_array(image)
    trajectory = cv.trajectory_to_msg(np.zeros((2, 3)), np.tile([0.0, 0, 0, 1], (2, 1)), np.ones(2), 0.1)
    trajectory.poses = [trajectory.poses[0]] * (cv.MAX_TRAJECTORY_WAYPOINTS + 1)
    with pytest.raises(ValueError, match=r"trajectory has 10001 poses, more than the limit of 10000 "
                                         r"\(MAX_TRAJECTORY_WAYPOINTS\)"):
        cv.trajectory_from_msg(trajectory)
    joints = JointState(name=["j"] * 1001, position=[0.0] * 1001)
    with pytest.raises(ValueError, match=r"joint state has 1001 names, more than the limit of 1000"):
        cv.joint_positions_from_msg(joints, ["j"])
    goal = cv.goal_latent_to_msg(LatentGoal(tokens=np.ones((1, 2), np.float32)))
    goal.coarse_poses, goal.coarse_gripper = [cv.pose_to_msg([0, 0, 0], [0, 0, 0, 1])] * 257, [1.0] * 257
    with pytest.raises(ValueError, match=r"goal latent has 257 coarse poses, more than the limit of 256 "
                                         r"\(MAX_COARSE_ACTIONS\)"):
        cv.goal_latent_from_msg(goal)
    # At the bound, still read.
    assert len(cv.pointcloud2_to_points(cv.points_to_pointcloud2(np.zeros((7, 3), dtype=np.float32))).xyz) == 7


# ----- goal latents ------------------------------------------------------------------------------

def test_goal_latent_round_trip_with_a_token_matrix_and_coarse_actions(rng):
    tokens = rng.normal(size=(7, 16)).astype(np.float32)
    rotations = cv.quaternions_to_matrices(random_quaternions(rng, 3))
    coarse = CoarseActions(positions=rng.normal(size=(3, 3)).astype(np.float32), rotations=rotations,
                           gripper_open=np.array([1.0, 0.25, 0.0], np.float32))
    message = cv.goal_latent_to_msg(LatentGoal(tokens=tokens, coarse=coarse), instruction="open the drawer",
                                    sequence=5, stamp=2_000_000_001, observation_stamp=1_000_000_002,
                                    inference_time=0.25, model_id="tiny")
    assert (message.num_tokens, message.token_dim, len(message.latent)) == (7, 16, 112)
    assert len(message.coarse_poses) == 3 and list(message.coarse_gripper) == [1.0, 0.25, 0.0]
    back = cv.goal_latent_from_msg(message, token_dim=16, coarse_actions=3)
    np.testing.assert_array_equal(back.goal.tokens, tokens)  # row after row, bit for bit
    np.testing.assert_allclose(back.goal.coarse.positions, coarse.positions, atol=1e-6)
    np.testing.assert_allclose(back.goal.coarse.rotations, rotations, atol=1e-6)
    assert (back.sequence, back.stamp_ns, back.observation_stamp_ns, back.instruction, back.model_id) == (
        5, 2_000_000_001, 1_000_000_002, "open the drawer", "tiny")


def test_a_goal_latent_from_an_older_publisher_is_one_token():
    message = GoalLatent(latent=np.arange(512, dtype=np.float32).tolist())
    goal = cv.goal_latent_from_msg(message).goal
    assert (goal.num_tokens, goal.token_dim, goal.coarse) == (1, 512, None)


@pytest.mark.parametrize("mutate, error", [
    (lambda m: setattr(m, "num_tokens", 3), r"declares a 3 x 16 token matrix \(48 values\) but carries 112"),
    (lambda m: setattr(m, "token_dim", 0), "num_tokens and token_dim are both 0"),
    (lambda m: setattr(m, "coarse_gripper", [0.5]), "2 coarse poses but 1 coarse gripper values"),
    (lambda m: setattr(m, "coarse_gripper", [0.5, 1.5]), r"openness in \[0, 1\]"),
    (lambda m: setattr(m.coarse_poses[0].orientation, "w", 0.0) or setattr(m.coarse_poses[0].orientation, "x", 0.0)
     or setattr(m.coarse_poses[0].orientation, "y", 0.0) or setattr(m.coarse_poses[0].orientation, "z", 0.0),
     "coarse pose 0: pose orientation has zero length"),
    (lambda m: m.latent.__setitem__(3, float("nan")), "1 NaN or infinite values"),
    (lambda m: setattr(m, "latent", []) or setattr(m, "num_tokens", 0) or setattr(m, "token_dim", 0),
     "goal latent is empty"),
])
def test_bad_goal_latents_are_refused_by_name(mutate, error):
    coarse = CoarseActions(positions=np.zeros((2, 3)), rotations=np.stack([np.eye(3)] * 2),
                           gripper_open=np.array([0.0, 1.0]))
    message = cv.goal_latent_to_msg(LatentGoal(tokens=np.ones((7, 16), np.float32), coarse=coarse))
    mutate(message)
    with pytest.raises(ValueError, match=error):
        cv.goal_latent_from_msg(message)


def test_a_goal_latent_of_the_wrong_width_or_without_the_coarse_actions_asked_for_is_refused():
    message = cv.goal_latent_to_msg(LatentGoal(tokens=np.ones((4, 16), np.float32)))
    with pytest.raises(ValueError, match="tokens are 16-D but the receiver takes 32-D tokens"):
        cv.goal_latent_from_msg(message, token_dim=32)
    with pytest.raises(ValueError, match="conditions on 8 coarse actions but the goal latent carries none"):
        cv.goal_latent_from_msg(message, coarse_actions=8)
