"""ROS messages <-> numpy arrays, with validation. No node logic lives here.

Conventions (one place, stated once):

- Quaternions are **(x, y, z, w)**, scalar last, as geometry_msgs/Quaternion and scipy's ``Rotation``
  order them. ``transforms3d`` orders them (w, x, y, z): convert with :func:`quat_xyzw_to_wxyz` /
  :func:`quat_wxyz_to_xyzw` at that boundary and nowhere else.
- Positions are metres, in the message's ``header.frame_id`` (``world`` unless told otherwise).
- Stamps are integer nanoseconds when they leave a message (no float rounding of epoch times).
- PointCloud2 clouds are unorganised (height 1), little-endian, fields ``x y z`` float32 and ``rgb`` as
  the PCL/RViz packed float32 (the bytes of a uint32 ``0x00RRGGBB``).
- **NaN policy for clouds**: non-finite points are *dropped* on the way in (``nan_policy="drop"``,
  the default, and the count is reported), because depth cameras legitimately mark invalid pixels
  with NaN (``is_dense = false``); ``nan_policy="reject"`` raises instead. On the way out, clouds with
  non-finite points are refused, so every cloud this project publishes is dense.

Every function raises ``ValueError`` with a message naming the problem; nodes log it and drop the
message. What a message may ask of memory is bounded before anything is allocated for it: at most
``MAX_CLOUD_POINTS`` points a cloud (with ``MAX_POINT_FIELDS`` fields), ``MAX_IMAGE_PIXELS`` pixels an
image, ``MAX_TRAJECTORY_WAYPOINTS`` poses a trajectory, ``MAX_JOINT_NAMES`` entries a joint state, and
``MAX_LATENT_VALUES`` values and ``MAX_COARSE_ACTIONS`` coarse poses a goal latent.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2, PointField
from std_msgs.msg import Header

from openhelix_msgs.msg import EETrajectory, GoalLatent
from openhelix_training.goal import (
    MAX_COARSE_ACTIONS,
    MAX_LATENT_VALUES,
    CoarseActions,
    LatentGoal,
    LatentGoalError,
    check_latent_goal,
)

# The bounds on what one incoming message may make a node allocate: one place, shared with the bag reader.
from openhelix_training.limits import (
    MAX_CLOUD_POINTS,
    MAX_IMAGE_PIXELS,
    MAX_JOINT_NAMES,
    MAX_POINT_FIELDS,
    MAX_TRAJECTORY_WAYPOINTS,
    check_bound,
)

WORLD_FRAME = "world"

# ---------------------------------------------------------------------------------------------------
# Time


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(nanoseconds: int) -> Time:
    """Integer nanoseconds (>= 0) -> builtin_interfaces/Time."""
    nanoseconds = int(nanoseconds)
    if nanoseconds < 0:
        raise ValueError(f"a ROS time cannot be negative (got {nanoseconds} ns)")
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def duration_to_seconds(duration: Duration) -> float:
    return int(duration.sec) + int(duration.nanosec) * 1e-9


def seconds_to_duration(seconds: float) -> Duration:
    """Seconds (finite, >= 0) -> builtin_interfaces/Duration, rounded to the nanosecond."""
    if not np.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0 (got {seconds})")
    total = round(float(seconds) * 1e9)
    return Duration(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)


def make_header(frame_id: str = WORLD_FRAME, stamp: Time | int | None = None) -> Header:
    """A Header; ``stamp`` may be a Time, integer nanoseconds, or None (zero: the caller stamps later)."""
    if stamp is None:
        stamp = Time()
    elif not isinstance(stamp, Time):
        stamp = ns_to_stamp(stamp)
    return Header(frame_id=frame_id, stamp=stamp)


# ---------------------------------------------------------------------------------------------------
# Rotations


def quat_xyzw_to_wxyz(quaternions: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w) -> (w, x, y, z), as transforms3d wants them."""
    quaternions = np.asarray(quaternions, dtype=np.float64)
    return quaternions[..., [3, 0, 1, 2]]


def quat_wxyz_to_xyzw(quaternions: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), as transforms3d gives them -> (x, y, z, w)."""
    quaternions = np.asarray(quaternions, dtype=np.float64)
    return quaternions[..., [1, 2, 3, 0]]


def normalize_quaternions(quaternions: np.ndarray, what: str = "quaternion") -> np.ndarray:
    """Unit-normalise (..., 4) quaternions; refuse non-finite ones and ones too short to have a direction."""
    quaternions = np.asarray(quaternions, dtype=np.float64)
    if quaternions.shape[-1:] != (4,):
        raise ValueError(f"{what} must have 4 components (x, y, z, w), got shape {quaternions.shape}")
    if not np.all(np.isfinite(quaternions)):
        raise ValueError(f"{what} contains NaN or infinite values")
    norms = np.linalg.norm(quaternions, axis=-1, keepdims=True)
    if np.any(norms < 1e-6):
        raise ValueError(f"{what} has zero length, which is no rotation")
    return quaternions / norms


def quaternions_to_matrices(quaternions_xyzw: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (x, y, z, w) -> (N, 3, 3) rotation matrices."""
    return Rotation.from_quat(normalize_quaternions(quaternions_xyzw)).as_matrix()


def matrices_to_quaternions(matrices: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices -> (N, 4) unit quaternions (x, y, z, w), w >= 0.

    Refuses matrices that are not rotations (more than 1e-3 from orthonormal, or reflections) rather
    than silently projecting them, since such a matrix means a bug upstream.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim != 3 or matrices.shape[1:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (N, 3, 3), got {matrices.shape}")
    if not np.all(np.isfinite(matrices)):
        raise ValueError("rotation matrices contain NaN or infinite values")
    error = np.abs(matrices @ np.swapaxes(matrices, 1, 2) - np.eye(3)).max(initial=0.0)
    if error > 1e-3 or np.any(np.linalg.det(matrices) < 0):
        raise ValueError(f"not rotation matrices (orthonormality error {error:.2g} or a reflection)")
    quaternions = Rotation.from_matrix(matrices).as_quat()
    return np.where(quaternions[:, 3:4] < 0, -quaternions, quaternions)


# ---------------------------------------------------------------------------------------------------
# Poses


def pose_to_msg(position: Sequence[float], quaternion_xyzw: Sequence[float]) -> Pose:
    """Position (3,) in metres and quaternion (x, y, z, w) -> geometry_msgs/Pose (quaternion normalised)."""
    position = np.asarray(position, dtype=np.float64)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise ValueError(f"a position must be 3 finite numbers, got {position.tolist()}")
    x, y, z, w = normalize_quaternions(quaternion_xyzw, "orientation").tolist()
    return Pose(position=Point(x=float(position[0]), y=float(position[1]), z=float(position[2])),
                orientation=Quaternion(x=x, y=y, z=z, w=w))


def pose_from_msg(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/Pose -> (position (3,), unit quaternion (x, y, z, w)); refuses NaN and zero quaternions."""
    position = np.array([pose.position.x, pose.position.y, pose.position.z], dtype=np.float64)
    if not np.all(np.isfinite(position)):
        raise ValueError(f"pose position contains NaN or infinite values: {position.tolist()}")
    o = pose.orientation
    return position, normalize_quaternions([o.x, o.y, o.z, o.w], "pose orientation")


def pose_stamped_to_msg(position: Sequence[float], quaternion_xyzw: Sequence[float],
                        frame_id: str = WORLD_FRAME, stamp: Time | int | None = None) -> PoseStamped:
    return PoseStamped(header=make_header(frame_id, stamp), pose=pose_to_msg(position, quaternion_xyzw))


def pose_stamped_from_msg(message: PoseStamped) -> tuple[np.ndarray, np.ndarray, str, int]:
    """PoseStamped -> (position, quaternion (x, y, z, w), frame_id, stamp in ns)."""
    position, quaternion = pose_from_msg(message.pose)
    return position, quaternion, message.header.frame_id, stamp_to_ns(message.header.stamp)


# ---------------------------------------------------------------------------------------------------
# End-effector trajectories


@dataclass
class TrajectoryArrays:
    """An EETrajectory as arrays: N waypoints, due one per ``period`` seconds after the stamp.

    ``quaternions`` are unit (x, y, z, w); ``gripper`` is CALVIN's +1 open / -1 close per waypoint.
    """

    positions: np.ndarray  # (N, 3) metres
    quaternions: np.ndarray  # (N, 4) x, y, z, w
    gripper: np.ndarray  # (N,)
    period: float  # seconds between waypoints
    frame_id: str = WORLD_FRAME
    stamp_ns: int = 0
    sequence: int = 0
    latent_sequence: int = 0
    latent_stamp_ns: int = 0
    inference_time: float = 0.0

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def rotation_matrices(self) -> np.ndarray:
        return quaternions_to_matrices(self.quaternions)


def _check_trajectory(positions: np.ndarray, orientations: np.ndarray, gripper: np.ndarray,
                      period: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    positions = np.asarray(positions, dtype=np.float64)
    orientations = np.asarray(orientations, dtype=np.float64)
    gripper = np.asarray(gripper, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"trajectory positions must have shape (N, 3), got {positions.shape}")
    n = len(positions)
    if n == 0:
        raise ValueError("trajectory is empty (no waypoints)")
    if orientations.shape == (n, 3, 3):
        quaternions = matrices_to_quaternions(orientations)
    elif orientations.shape == (n, 4):
        quaternions = normalize_quaternions(orientations, "trajectory orientation")
    else:
        raise ValueError(f"trajectory orientations must be ({n}, 4) quaternions (x, y, z, w) or ({n}, 3, 3) "
                         f"rotation matrices to match {n} positions, got {orientations.shape}")
    if gripper.shape != (n,):
        raise ValueError(f"trajectory has {n} poses but {gripper.size} gripper commands")
    bad_positions = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
    if bad_positions.size:
        raise ValueError(f"trajectory positions contain NaN or infinite values at waypoint(s) "
                         f"{bad_positions.tolist()}")
    if not np.all(np.isfinite(gripper)):
        raise ValueError("trajectory gripper commands contain NaN or infinite values")
    if not np.isfinite(period) or period <= 0:
        raise ValueError(f"trajectory waypoint period must be > 0 s, got {period}")
    return positions, quaternions, gripper


def trajectory_to_msg(positions: np.ndarray, orientations: np.ndarray, gripper: np.ndarray,
                      period: float, *, frame_id: str = WORLD_FRAME, stamp: Time | int | None = None,
                      sequence: int = 0, latent_sequence: int = 0, latent_stamp: Time | int | None = None,
                      inference_time: float = 0.0) -> EETrajectory:
    """Arrays -> openhelix_msgs/EETrajectory.

    ``orientations`` are (N, 4) quaternions (x, y, z, w) or (N, 3, 3) rotation matrices; quaternions are
    normalised. Raises ValueError on an empty trajectory, mismatched lengths, NaN or a bad period.
    """
    positions, quaternions, gripper = _check_trajectory(positions, orientations, gripper, period)
    message = EETrajectory()
    message.header = make_header(frame_id, stamp)
    message.poses = [pose_to_msg(p, q) for p, q in zip(positions, quaternions, strict=True)]
    message.gripper = array.array("f", gripper.astype(np.float32).tobytes())
    message.waypoint_period = seconds_to_duration(period)
    message.sequence = int(sequence)
    message.latent_sequence = int(latent_sequence)
    message.latent_stamp = make_header(stamp=latent_stamp).stamp
    message.inference_time = float(inference_time)
    return message


def trajectory_from_msg(message: EETrajectory) -> TrajectoryArrays:
    """openhelix_msgs/EETrajectory -> TrajectoryArrays; ValueError names what is wrong with it."""
    n = len(message.poses)
    if n == 0:
        raise ValueError("trajectory is empty (no poses)")
    check_bound("trajectory", n, MAX_TRAJECTORY_WAYPOINTS, "poses", "MAX_TRAJECTORY_WAYPOINTS")
    positions = np.array([[p.position.x, p.position.y, p.position.z] for p in message.poses])
    quaternions = np.array([[p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]
                            for p in message.poses])
    gripper = np.asarray(message.gripper, dtype=np.float64)
    period = duration_to_seconds(message.waypoint_period)
    positions, quaternions, gripper = _check_trajectory(positions, quaternions, gripper, period)
    return TrajectoryArrays(
        positions=positions, quaternions=quaternions, gripper=gripper, period=period,
        frame_id=message.header.frame_id, stamp_ns=stamp_to_ns(message.header.stamp),
        sequence=int(message.sequence), latent_sequence=int(message.latent_sequence),
        latent_stamp_ns=stamp_to_ns(message.latent_stamp), inference_time=float(message.inference_time))


# ---------------------------------------------------------------------------------------------------
# Goal latents


@dataclass(frozen=True)
class GoalLatentArrays:
    """A GoalLatent as arrays: its goal (token matrix + coarse actions) and its bookkeeping fields."""

    goal: LatentGoal
    instruction: str = ""
    sequence: int = 0
    stamp_ns: int = 0
    observation_stamp_ns: int = 0
    inference_time: float = 0.0
    model_id: str = ""


def goal_latent_to_msg(goal: LatentGoal, *, instruction: str = "", sequence: int = 0,
                       stamp: Time | int | None = None, observation_stamp: Time | int | None = None,
                       inference_time: float = 0.0, model_id: str = "") -> GoalLatent:
    """LatentGoal -> openhelix_msgs/GoalLatent, the token matrix row after row with its shape, the coarse
    actions as poses; ValueError (LatentGoalError) when the goal is not sound."""
    goal = check_latent_goal(goal)
    message = GoalLatent()
    message.header = make_header("", stamp)
    message.latent = array.array("f", np.ascontiguousarray(goal.tokens).tobytes())
    message.num_tokens, message.token_dim = goal.num_tokens, goal.token_dim
    if goal.coarse is not None:
        quaternions = matrices_to_quaternions(goal.coarse.rotations.astype(np.float64))
        message.coarse_poses = [pose_to_msg(p, q) for p, q in zip(goal.coarse.positions, quaternions, strict=True)]
        message.coarse_gripper = array.array("f", np.ascontiguousarray(goal.coarse.gripper_open).tobytes())
    message.instruction = instruction
    message.sequence = int(sequence)
    message.observation_stamp = make_header(stamp=observation_stamp).stamp
    message.inference_time = float(inference_time)
    message.model_id = model_id
    return message


def goal_latent_from_msg(message: GoalLatent, token_dim: int | None = None,
                         coarse_actions: int | None = None) -> GoalLatentArrays:
    """openhelix_msgs/GoalLatent -> GoalLatentArrays. ValueError (LatentGoalError) names what is wrong:
    a token matrix whose declared shape does not match the latent's length, a token width other than
    ``token_dim``, coarse poses without one gripper value each, NaN, zero quaternions, too many values."""
    values = len(message.latent)
    check_bound("goal latent", values, MAX_LATENT_VALUES, "values", "MAX_LATENT_VALUES", LatentGoalError)
    n, d = int(message.num_tokens), int(message.token_dim)
    if n == 0 and d == 0:
        n, d = 1, values  # one token: a publisher from before token matrices
    elif n == 0 or d == 0:
        raise LatentGoalError(f"goal latent declares a {n} x {d} token matrix: num_tokens and token_dim are "
                              "both 0 (one token) or both set")
    if n * d != values:
        raise LatentGoalError(f"goal latent declares a {n} x {d} token matrix ({n * d} values) but carries "
                              f"{values} latent values")
    if values == 0:
        raise LatentGoalError("goal latent is empty (no latent values)")
    tokens = np.asarray(message.latent, dtype=np.float32).reshape(n, d)
    coarse = None
    k = len(message.coarse_poses)
    if k or len(message.coarse_gripper):
        check_bound("goal latent", k, MAX_COARSE_ACTIONS, "coarse poses", "MAX_COARSE_ACTIONS", LatentGoalError)
        if len(message.coarse_gripper) != k:
            raise LatentGoalError(f"goal latent has {k} coarse poses but {len(message.coarse_gripper)} coarse "
                                  "gripper values")
        poses = []
        for i, pose in enumerate(message.coarse_poses):
            try:
                poses.append(pose_from_msg(pose))
            except ValueError as error:
                raise LatentGoalError(f"goal latent coarse pose {i}: {error}") from error
        positions = np.array([p for p, _ in poses], dtype=np.float64).reshape(k, 3)
        quaternions = np.array([q for _, q in poses]).reshape(k, 4)
        coarse = CoarseActions(positions=positions, rotations=quaternions_to_matrices(quaternions),
                               gripper_open=np.asarray(message.coarse_gripper, dtype=np.float32))
    goal = check_latent_goal(LatentGoal(tokens=tokens, coarse=coarse), token_dim, coarse_actions)
    return GoalLatentArrays(goal=goal, instruction=message.instruction, sequence=int(message.sequence),
                            stamp_ns=stamp_to_ns(message.header.stamp),
                            observation_stamp_ns=stamp_to_ns(message.observation_stamp),
                            inference_time=float(message.inference_time), model_id=message.model_id)


# ---------------------------------------------------------------------------------------------------
# Joint states


def joint_state_to_msg(names: Sequence[str], positions: Sequence[float],
                       velocities: Sequence[float] | None = None, efforts: Sequence[float] | None = None,
                       stamp: Time | int | None = None) -> JointState:
    """Names and positions (rad or m) -> sensor_msgs/JointState; velocities and efforts are optional."""
    names = list(names)
    columns = {"positions": positions, "velocities": velocities, "efforts": efforts}
    values = {}
    for key, column in columns.items():
        if column is None:
            values[key] = []
            continue
        column = np.asarray(column, dtype=np.float64)
        if column.shape != (len(names),):
            raise ValueError(f"joint state has {len(names)} names but {column.size} {key}")
        values[key] = column.tolist()
    return JointState(header=make_header("", stamp), name=names, position=values["positions"],
                      velocity=values["velocities"], effort=values["efforts"])


def joint_positions_from_msg(message: JointState, names: Sequence[str]) -> np.ndarray:
    """The positions of ``names``, in that order, from a JointState that may list others too.

    Raises ValueError naming joints that are missing or have no finite position.
    """
    check_bound("joint state", len(message.name), MAX_JOINT_NAMES, "names", "MAX_JOINT_NAMES")
    if len(message.position) != len(message.name):
        raise ValueError(f"joint state has {len(message.name)} names but {len(message.position)} positions")
    index = {name: i for i, name in enumerate(message.name)}
    missing = [name for name in names if name not in index]
    if missing:
        raise ValueError(f"joint state lacks joint(s) {', '.join(missing)}")
    positions = np.array([message.position[index[name]] for name in names], dtype=np.float64)
    bad = [name for name, value in zip(names, positions, strict=True) if not np.isfinite(value)]
    if bad:
        raise ValueError(f"joint state has NaN or infinite position for {', '.join(bad)}")
    return positions


# ---------------------------------------------------------------------------------------------------
# Images and camera info

# encoding -> (dtype, channels) for the encodings this project reads.
_IMAGE_ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "32FC1": (np.float32, 1), "16UC1": (np.uint16, 1),
}


def rgb_to_image(rgb: np.ndarray, frame_id: str, stamp: Time | int | None = None) -> Image:
    """HxWx3 uint8 RGB -> sensor_msgs/Image (rgb8)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"an rgb8 image must be HxWx3 uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    height, width = rgb.shape[:2]
    return Image(header=make_header(frame_id, stamp), height=height, width=width, encoding="rgb8",
                 is_bigendian=0, step=width * 3, data=array.array("B", np.ascontiguousarray(rgb).tobytes()))


def depth_to_image(depth: np.ndarray, frame_id: str, stamp: Time | int | None = None) -> Image:
    """HxW depth in metres -> sensor_msgs/Image (32FC1, REP 118: NaN / inf where there is no reading)."""
    depth = np.asarray(depth)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"a depth image must be HxW floating point metres, got shape {depth.shape} "
                         f"dtype {depth.dtype}")
    height, width = depth.shape
    data = np.ascontiguousarray(depth, dtype="<f4").tobytes()
    return Image(header=make_header(frame_id, stamp), height=height, width=width, encoding="32FC1",
                 is_bigendian=0, step=width * 4, data=array.array("B", data))


def image_to_array(message: Image) -> np.ndarray:
    """sensor_msgs/Image -> HxWxC (colour) or HxW (mono, depth) array; bgr8/bgra8 come back as RGB(A).

    Honours ``step`` (row padding) and ``is_bigendian``; raises ValueError on an unknown encoding or a
    buffer that does not match the stated size.
    """
    if message.encoding not in _IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {message.encoding!r} "
                         f"(supported: {', '.join(_IMAGE_ENCODINGS)})")
    dtype, channels = _IMAGE_ENCODINGS[message.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if message.is_bigendian else "<")
    height, width, step = int(message.height), int(message.width), int(message.step)
    check_bound(f"image of {width}x{height}", width * height, MAX_IMAGE_PIXELS, "pixels", "MAX_IMAGE_PIXELS")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(f"image step {step} is smaller than a {width}-pixel {message.encoding} row "
                         f"({row_bytes} bytes)")
    if len(message.data) < step * height:
        raise ValueError(f"image data has {len(message.data)} bytes, {message.encoding} {width}x{height} "
                         f"with step {step} needs {step * height}")
    raw = np.frombuffer(message.data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = raw[:, :row_bytes].copy().view(dtype).reshape(height, width, channels).astype(dtype.newbyteorder("="))
    if message.encoding in ("bgr8", "bgra8"):
        pixels[..., :3] = pixels[..., 2::-1]
    return pixels[..., 0] if channels == 1 else pixels


def camera_info_to_msg(intrinsics: np.ndarray, width: int, height: int, frame_id: str,
                       stamp: Time | int | None = None, distortion: Sequence[float] | None = None) -> CameraInfo:
    """Pinhole intrinsics K (3x3) and image size -> sensor_msgs/CameraInfo.

    The camera is taken as rectified (R = I, P = [K | 0]); ``distortion`` defaults to five zero
    plumb-bob coefficients, which is what a simulated camera has.
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)):
        raise ValueError(f"camera intrinsics must be a finite 3x3 matrix, got shape {k.shape}")
    if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]):
        raise ValueError(f"not a pinhole intrinsics matrix (fx, fy > 0, last row 0 0 1): {k.tolist()}")
    if width <= 0 or height <= 0:
        raise ValueError(f"camera image size must be positive, got {width}x{height}")
    projection = np.hstack([k, np.zeros((3, 1))])
    return CameraInfo(header=make_header(frame_id, stamp), width=int(width), height=int(height),
                      distortion_model="plumb_bob",
                      d=list(distortion) if distortion is not None else [0.0] * 5,
                      k=k.ravel().tolist(), r=np.eye(3).ravel().tolist(), p=projection.ravel().tolist())


def camera_info_from_msg(message: CameraInfo) -> tuple[np.ndarray, int, int]:
    """sensor_msgs/CameraInfo -> (K 3x3, width, height)."""
    k = np.asarray(message.k, dtype=np.float64).reshape(3, 3)
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError("camera info has no intrinsics (fx or fy is 0: an uncalibrated camera)")
    return k, int(message.width), int(message.height)


# ---------------------------------------------------------------------------------------------------
# Point clouds

_POINT_FIELD_DTYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}


@dataclass
class CloudArrays:
    """A point cloud as arrays: ``xyz`` (N, 3) float32 metres, ``rgb`` (N, 3) uint8 or None, and how many
    non-finite points were dropped on the way in."""

    xyz: np.ndarray
    rgb: np.ndarray | None
    frame_id: str = WORLD_FRAME
    stamp_ns: int = 0
    dropped: int = 0


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 holding the bits of uint32 0x00RRGGBB (PCL's packed ``rgb`` field)."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).astype("<u4").view("<f4")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: packed float32 (or uint32) -> (N, 3) uint8."""
    bits = np.ascontiguousarray(packed).view(np.uint32) if packed.dtype.itemsize == 4 else packed
    bits = bits.astype(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def points_to_pointcloud2(xyz: np.ndarray, rgb: np.ndarray | None = None, frame_id: str = WORLD_FRAME,
                          stamp: Time | int | None = None) -> PointCloud2:
    """(N, 3) points in metres (+ optional (N, 3) uint8 colours) -> a dense, unorganised PointCloud2.

    Fields ``x y z`` float32 at offsets 0/4/8 and, with colours, ``rgb`` packed float32 at 12 (point
    step 16, which keeps points aligned). Refuses non-finite points: a published cloud is dense.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"cloud points must have shape (N, 3), got {xyz.shape}")
    n = len(xyz)
    bad = int(np.count_nonzero(~np.all(np.isfinite(xyz), axis=1)))
    if bad:
        raise ValueError(f"cloud has {bad} of {n} points with NaN or infinite coordinates; drop them first")
    return _cloud_message(xyz, rgb, 1, n, frame_id, stamp)


def organized_points_to_pointcloud2(xyz: np.ndarray, rgb: np.ndarray, frame_id: str = WORLD_FRAME,
                                    stamp: Time | int | None = None) -> PointCloud2:
    """One camera's pixels as an organised PointCloud2 (height x width, row-major, as
    depth_image_proc's ``point_cloud_xyzrgb`` publishes one): (H, W, 3) coordinates in metres, NaN
    where a pixel has no depth (so ``is_dense`` is false then), and the pixels' (H, W, 3) uint8 colours."""
    xyz, rgb = np.asarray(xyz), np.asarray(rgb)
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"organised cloud points must have shape (H, W, 3), got {xyz.shape}")
    if rgb.shape != xyz.shape:
        raise ValueError(f"organised cloud colours must have shape {xyz.shape} like the points, got {rgb.shape}")
    height, width = xyz.shape[:2]
    return _cloud_message(xyz.reshape(-1, 3), rgb.reshape(-1, 3), height, width, frame_id, stamp)


def _cloud_message(xyz: np.ndarray, rgb: np.ndarray | None, height: int, width: int, frame_id: str,
                   stamp: Time | int | None) -> PointCloud2:
    n = len(xyz)
    names, formats, offsets = ["x", "y", "z"], ["<f4"] * 3, [0, 4, 8]
    fields = [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
              for name, offset in zip(names, offsets, strict=True)]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3):
            raise ValueError(f"cloud colours must have shape ({n}, 3) to match the points, got {rgb.shape}")
        if rgb.dtype != np.uint8:
            raise ValueError(f"cloud colours must be uint8 0-255, got dtype {rgb.dtype}")
        names.append("rgb")
        formats.append("<f4")
        offsets.append(12)
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
    point_step = 16 if rgb is not None else 12
    points = np.zeros(n, dtype=np.dtype({"names": names, "formats": formats, "offsets": offsets,
                                         "itemsize": point_step}))
    points["x"], points["y"], points["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is not None:
        points["rgb"] = pack_rgb(rgb)
    dense = bool(np.all(np.isfinite(xyz)))
    return PointCloud2(header=make_header(frame_id, stamp), height=height, width=width, fields=fields,
                       is_bigendian=False, point_step=point_step, row_step=point_step * width,
                       data=array.array("B", points.tobytes()), is_dense=dense)


def pointcloud2_dtype(message: PointCloud2) -> np.dtype:
    """The numpy structured dtype of one point of ``message`` (every named field, at its offset)."""
    order = ">" if message.is_bigendian else "<"
    check_bound("PointCloud2", len(message.fields), MAX_POINT_FIELDS, "fields", "MAX_POINT_FIELDS")
    names, formats, offsets = [], [], []
    for point_field in message.fields:
        if point_field.datatype not in _POINT_FIELD_DTYPES:
            raise ValueError(f"PointCloud2 field {point_field.name!r} has unknown datatype {point_field.datatype}")
        if point_field.name in names:
            raise ValueError(f"PointCloud2 field {point_field.name!r} appears twice")
        base = order + _POINT_FIELD_DTYPES[point_field.datatype]
        count = max(int(point_field.count), 1)
        names.append(point_field.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(point_field.offset))
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": int(message.point_step)})
    except ValueError as error:
        raise ValueError(f"PointCloud2 fields do not fit in point_step {message.point_step}: {error}") from None


def pointcloud2_to_points(message: PointCloud2, nan_policy: str = "drop") -> CloudArrays:
    """PointCloud2 -> CloudArrays (xyz float32, rgb uint8 when an ``rgb``/``rgba`` field exists).

    Reads any field layout (organised or not, padded rows, big-endian, float64 coordinates). Points with
    a non-finite coordinate are dropped (``nan_policy="drop"``), make it raise (``"reject"``) or stay
    (``"keep"``: every point in row-major order, as an organised cloud needs them).
    Raises ValueError naming missing x/y/z fields, or a data buffer shorter than the header says.
    """
    if nan_policy not in ("drop", "reject", "keep"):
        raise ValueError(f"nan_policy must be 'drop', 'reject' or 'keep', got {nan_policy!r}")
    present = {f.name for f in message.fields}
    missing = [name for name in ("x", "y", "z") if name not in present]
    if missing:
        raise ValueError(f"PointCloud2 lacks field(s) {', '.join(missing)} "
                         f"(has: {', '.join(sorted(present)) or 'none'})")
    check_bound(f"PointCloud2 of {message.width}x{message.height}", int(message.width) * int(message.height),
                MAX_CLOUD_POINTS, "points", "MAX_CLOUD_POINTS")
    dtype = pointcloud2_dtype(message)
    for name in ("x", "y", "z"):
        if dtype[name].kind != "f" or dtype[name].shape:
            raise ValueError(f"PointCloud2 field {name!r} must be one float32/float64, got {dtype[name]}")
    height, width = int(message.height), int(message.width)
    row_step, point_step = int(message.row_step), int(message.point_step)
    if row_step < width * point_step:
        raise ValueError(f"PointCloud2 row_step {row_step} < width {width} x point_step {point_step}")
    if len(message.data) < row_step * height:
        raise ValueError(f"PointCloud2 data has {len(message.data)} bytes, header says "
                         f"{height} rows x {row_step} bytes")
    if height == 1 or row_step == width * point_step:
        points = np.frombuffer(message.data, dtype=dtype, count=width * height)
    else:  # padded rows: slice each row to its points, then join them
        rows = np.frombuffer(message.data, dtype=np.uint8, count=row_step * height).reshape(height, row_step)
        points = np.ascontiguousarray(rows[:, :width * point_step]).view(dtype).reshape(-1)
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=-1).astype(np.float32)
    colour_field = "rgb" if "rgb" in present else "rgba" if "rgba" in present else None
    rgb = None
    if colour_field is not None:
        packed = points[colour_field]
        if packed.dtype.itemsize != 4 or packed.shape[1:]:
            raise ValueError(f"PointCloud2 field {colour_field!r} must be one packed 4-byte value, got {packed.dtype}")
        rgb = unpack_rgb(packed.astype(packed.dtype.newbyteorder("=")))
    finite = np.all(np.isfinite(xyz), axis=1)
    dropped = int(len(xyz) - np.count_nonzero(finite))
    if dropped and nan_policy != "keep":
        if nan_policy == "reject":
            raise ValueError(f"PointCloud2 has {dropped} of {len(xyz)} points with NaN or infinite coordinates")
        xyz = xyz[finite]
        rgb = rgb[finite] if rgb is not None else None
    return CloudArrays(xyz=xyz, rgb=rgb, frame_id=message.header.frame_id,
                       stamp_ns=stamp_to_ns(message.header.stamp), dropped=dropped if nan_policy != "keep" else 0)


def pointcloud2_to_organized(message: PointCloud2) -> tuple[np.ndarray, np.ndarray, int]:
    """An organised PointCloud2 with colours -> (xyz (H, W, 3) float32, NaN kept; rgb (H, W, 3) uint8;
    the number of pixels without a finite point). ValueError for an unorganised cloud (height 1) or one
    without an rgb field: a camera's pixels are what a camera policy reads."""
    if int(message.height) < 2:
        raise ValueError(f"PointCloud2 is not organised (height {message.height}, width {message.width}): "
                         "expected one camera's pixels, height x width")
    cloud = pointcloud2_to_points(message, nan_policy="keep")
    if cloud.rgb is None:
        raise ValueError("organised PointCloud2 has no rgb field: a camera policy reads every pixel's colour")
    shape = (int(message.height), int(message.width), 3)
    missing = int(np.count_nonzero(~np.all(np.isfinite(cloud.xyz), axis=1)))
    return cloud.xyz.reshape(shape), cloud.rgb.reshape(shape), missing
