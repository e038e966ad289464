"""The CALVIN bridge without ROS: the simulator, one step's observation as arrays, and which action to
execute when (docs/ros_graph.md). The ``calvin_bridge`` node only converts what this module returns
into messages and back; the tests drive this module directly.

Clock and stamps (docs/ros_graph.md). In lockstep mode an observation's stamp is its sim time,
``step / control_rate`` seconds with ``step`` the control steps since the last reset (SceneState.step,
as CALVIN counts them), so every node recovers the env step exactly as ``round(stamp_seconds *
control_rate)`` and Asy(N) periods start with each episode. Sim time therefore starts again at 0 after
every reset, and stamps repeat across episodes: where that matters (the oracle's cache, the expert),
an observation is identified by its stamp *and* its content. In realtime mode the stamp is the wall
clock when the observation was taken. ``tick`` counts every observation the bridge has produced.

Conventions: quaternions (x, y, z, w) as in common/conversions.py; Euler angles are the simulator's, PyBullet's
roll-pitch-yaw: extrinsic rotations about x, then y, then z (scipy's ``"xyz"``), the same convention as
CALVIN's robot_obs and absolute actions.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.safety import WorkspaceBounds
from openhelix_ros.common.conversions import TrajectoryArrays, normalize_quaternions
from openhelix_ros.common.timing import CLOCK_MODES
from openhelix_ros.sim import BACKENDS, DYNAMIC_MODES, make_env
from openhelix_ros.sim.backends import scene_geometry
from openhelix_ros.sim.protocol import PROTOCOLS, RELEASE_EXECUTE_LEN, calvin_position_bounds

ROBOT_OBS_SIZE = 15
SCENE_OBS_SIZE = 24

# The names of CALVIN's robot_obs / scene_obs entries (SceneState.*_labels). The simulator documents the
# layouts in prose only, so they are spelled out once here.
ROBOT_OBS_LABELS: tuple[str, ...] = (
    "tcp_x", "tcp_y", "tcp_z", "tcp_roll", "tcp_pitch", "tcp_yaw", "gripper_width",
    *(f"panda_joint{i}" for i in range(1, 8)), "gripper_action")
SCENE_OBS_LABELS: tuple[str, ...] = (
    "sliding_door", "drawer", "button", "switch", "lightbulb", "green_led",
    *(f"{colour}_block_{axis}" for colour in ("red", "blue", "pink")
      for axis in ("x", "y", "z", "roll", "pitch", "yaw")))
assert len(ROBOT_OBS_LABELS) == ROBOT_OBS_SIZE and len(SCENE_OBS_LABELS) == SCENE_OBS_SIZE

# sensor_msgs/JointState names: the seven arm joints (robot_obs[7:14]) and both fingers, each at half
# the opening width (robot_obs[6]), as the Panda's URDF names them.
JOINT_NAMES: tuple[str, ...] = (*(f"panda_joint{i}" for i in range(1, 8)),
                                "panda_finger_joint1", "panda_finger_joint2")
CAMERAS = ("static", "gripper")
# Infos (for check_tasks) of this many recent observations are kept: a subtask is at most 360 steps
# (CALVIN) or 60 x 20 (the release protocol), so its start observation is still there when the
# evaluator asks at its end.
INFO_CACHE_SIZE = 2048


# ---------------------------------------------------------------------------------------------------
# Rotations (the simulator's Euler convention)


def euler_to_quaternion(euler: Sequence[float]) -> np.ndarray:
    """XYZ Euler angles (PyBullet / CALVIN) -> unit quaternion (x, y, z, w)."""
    return Rotation.from_euler("xyz", np.asarray(euler, dtype=np.float64)).as_quat()


def quaternion_to_euler(quaternion_xyzw: Sequence[float]) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> XYZ Euler angles (PyBullet / CALVIN), each in [-pi, pi]."""
    return Rotation.from_quat(normalize_quaternions(quaternion_xyzw)).as_euler("xyz")


def waypoint_to_action(position: Sequence[float], quaternion_xyzw: Sequence[float],
                       gripper: float) -> tuple[np.ndarray, np.ndarray, float]:
    """One trajectory waypoint -> the simulator's absolute action (position, XYZ Euler, gripper +-1).

    CALVIN reads a gripper command > 0 as open; anything else closes, so 0 closes too.
    """
    position = np.asarray(position, dtype=np.float64)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise ValueError(f"waypoint position must be 3 finite numbers, got {position.tolist()}")
    if not np.isfinite(gripper):
        raise ValueError(f"waypoint gripper command must be finite, got {gripper}")
    return position.copy(), quaternion_to_euler(quaternion_xyzw), 1.0 if gripper > 0 else -1.0


def validate_trajectory(trajectory: TrajectoryArrays, bounds: WorkspaceBounds,
                        world_frame: str = "world", current_position: np.ndarray | None = None) -> None:
    """Raise ValueError naming what makes ``trajectory`` unfit to execute.

    ``conversions.trajectory_from_msg`` already refuses NaN, empty and mismatched trajectories; this adds
    what only the executor knows: the frame, and the workspace. A pose outside the box is refused, not
    clipped: System 1 clips before it publishes (docs/ros_graph.md), so one outside means a bug or a
    foreign publisher, and executing a silently altered plan would hide it.

    One exception keeps the arm from being stranded: when the TCP itself is outside the box (physics
    can overshoot a waypoint on the boundary), System 1's safety filter brings it back at the speed
    limit, so the first waypoints are still outside. Waypoints no farther from the box than
    ``current_position`` is are then accepted: they never take the arm farther out.
    """
    if trajectory.frame_id not in (world_frame, ""):
        raise ValueError(f"trajectory is in frame {trajectory.frame_id!r}; the bridge executes poses in "
                         f"{world_frame!r} only")
    positions = np.asarray(trajectory.positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
        raise ValueError(f"trajectory positions must have shape (N, 3), N >= 1, got {positions.shape}")
    if not np.all(np.isfinite(positions)) or not np.all(np.isfinite(trajectory.quaternions)) \
            or not np.all(np.isfinite(trajectory.gripper)):
        raise ValueError("trajectory contains NaN or infinite values")
    outside_mask = ~bounds.contains(positions)
    if current_position is not None and outside_mask.any():
        current = np.asarray(current_position, dtype=np.float64).reshape(1, 3)
        current_distance = float(np.linalg.norm(current - bounds.clip(current)))
        distances = np.linalg.norm(positions - bounds.clip(positions), axis=1)
        outside_mask &= distances > current_distance + 1e-6
    outside = np.flatnonzero(outside_mask)
    if outside.size:
        first = positions[outside[0]].round(3).tolist()
        raise ValueError(f"trajectory waypoint(s) {outside.tolist()} outside the workspace "
                         f"{list(bounds.low)}..{list(bounds.high)} (first: {first})")


def check_obs_vector(values: Sequence[float], size: int, what: str) -> np.ndarray | None:
    """An optional robot_obs / scene_obs from a request: empty -> None, else exactly ``size`` finite
    numbers (ValueError naming the length or the bad entries otherwise)."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return None
    if array.shape != (size,):
        raise ValueError(f"{what} must have {size} values (or none), got {array.size}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{what} has NaN or infinite values at index {bad.tolist()}")
    return array


# ---------------------------------------------------------------------------------------------------
# Point cloud


class PointCloudFuser:
    """Both cameras' depth images as one coloured world-frame cloud (without a crop box, the same points
    as ``openhelix_ros.sim.fuse_point_cloud``), faster, because each camera's pixel rays are computed
    once (they depend only on the intrinsics) and only pixels nearer than ``max_depth`` are transformed.
    On the shared CPU this takes the fusion from about 9 ms to about 3 ms a step."""

    def __init__(self, max_depth: float = 2.0, bounds: tuple | None = None):
        """``max_depth``: pixels at or beyond it (m from the camera) are background. ``bounds``: ((x, y, z)
        low, high) world box the cloud is cropped to, or None (a scene whose background is far enough)."""
        self.max_depth = max_depth
        self.bounds = None if bounds is None else (np.asarray(bounds[0], dtype=np.float32),
                                                   np.asarray(bounds[1], dtype=np.float32))
        self._rays: dict[tuple, np.ndarray] = {}

    def _pixel_rays(self, intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
        key = (height, width, *np.asarray(intrinsics, dtype=np.float64).ravel().tolist())
        rays = self._rays.get(key)
        if rays is None:
            fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
            # Pixel centres (+ 0.5), where PyBullet's projection samples, as sim.cameras does.
            u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
            rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1).reshape(-1, 3)
            self._rays[key] = rays
        return rays

    def organized(self, depth: np.ndarray, camera: dict) -> np.ndarray:
        """Every pixel of one camera lifted to the world: (H, W, 3) float32, NaN where the depth is not
        positive and finite. No background cut and no crop: a camera policy (3D Diffuser Actor) reads
        the whole image and its point per pixel."""
        z = np.asarray(depth, dtype=np.float64)
        rays = self._pixel_rays(np.asarray(camera["intrinsics"]), *z.shape)
        extrinsics = np.asarray(camera["extrinsics"], dtype=np.float64)
        flat = z.reshape(-1)
        points = (rays * flat[:, None]) @ extrinsics[:3, :3].T + extrinsics[:3, 3]
        points[~(np.isfinite(flat) & (flat > 0))] = np.nan
        return points.reshape(z.shape + (3,)).astype(np.float32)

    def fuse(self, rgb: dict[str, np.ndarray], depth: dict[str, np.ndarray],
             cameras: dict[str, dict]) -> tuple[np.ndarray, np.ndarray]:
        xyz_parts, rgb_parts = [], []
        for name in CAMERAS:
            z = np.asarray(depth[name], dtype=np.float64)
            camera = cameras[name]
            rays = self._pixel_rays(np.asarray(camera["intrinsics"]), *z.shape)
            z = z.reshape(-1)
            keep = np.flatnonzero((z < self.max_depth) & np.isfinite(z))
            extrinsics = np.asarray(camera["extrinsics"], dtype=np.float64)
            points = ((rays[keep] * z[keep, None]) @ extrinsics[:3, :3].T + extrinsics[:3, 3]).astype(np.float32)
            colours = np.asarray(rgb[name]).reshape(-1, 3)[keep]
            if self.bounds is not None:
                inside = np.all((points >= self.bounds[0]) & (points <= self.bounds[1]), axis=1)
                points, colours = points[inside], colours[inside]
            xyz_parts.append(points)
            rgb_parts.append(colours)
        return np.concatenate(xyz_parts), np.concatenate(rgb_parts).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Configuration and observations


def release_position_bounds(p: dict) -> WorkspaceBounds | None:
    """The release protocol's position clip from the bridge's parameters: release_position_low/high when
    given, else (calvin backend with a dataset split) the split's statistics.yaml act bounds, else None."""
    low, high = list(p["release_position_low"]), list(p["release_position_high"])
    if low or high:
        return WorkspaceBounds(tuple(low), tuple(high))  # ValueError names wrong lengths or order
    if p["backend"] == "calvin" and p["dataset_path"]:
        statistics = os.path.join(p["dataset_path"], "statistics.yaml")
        if os.path.exists(statistics):
            return WorkspaceBounds(*calvin_position_bounds(statistics))
    return None


@dataclass
class BridgeConfig:
    """What the bridge node's parameters set (see bridge/node.py for their descriptions)."""

    backend: str = "embedded"
    clock_mode: str = "lockstep"
    control_rate: float = 30.0
    waypoints_per_plan: int = 1
    render: bool = True
    renderer: str = "auto"
    dynamic: str | None = None
    dynamic_speed: float = 0.02
    seed: int = 0
    workspace_low: tuple[float, float, float] = (-0.60, -0.60, -0.16)
    workspace_high: tuple[float, float, float] = (0.60, 0.36, 0.65)
    # Points farther than this from a camera are background (the sky behind the table).
    max_depth: float | None = None  # m; None: the backend's (its scene geometry's camera_max_depth)
    env_options: dict = field(default_factory=dict)
    # The box the release protocol clips executed positions to (CALVIN's statistics.yaml act bounds);
    # None: no clip.
    release_position_bounds: WorkspaceBounds | None = None

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.clock_mode not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {CLOCK_MODES}, got {self.clock_mode!r}")
        if not self.control_rate > 0:
            raise ValueError(f"control_rate must be > 0 Hz, got {self.control_rate}")
        if self.waypoints_per_plan < 1:
            raise ValueError(f"waypoints_per_plan must be >= 1, got {self.waypoints_per_plan}")
        if self.dynamic is not None and self.dynamic not in DYNAMIC_MODES:
            raise ValueError(f"dynamic must be empty or one of {DYNAMIC_MODES}, got {self.dynamic!r}")
        if not self.dynamic_speed >= 0:
            raise ValueError(f"dynamic_speed must be >= 0 m/s, got {self.dynamic_speed}")
        self.bounds  # noqa: B018 - WorkspaceBounds validates the box
        if self.release_position_bounds is not None and not isinstance(self.release_position_bounds, WorkspaceBounds):
            raise ValueError(f"release_position_bounds must be a WorkspaceBounds or None, got "
                             f"{self.release_position_bounds!r}")

    @property
    def bounds(self) -> WorkspaceBounds:
        return WorkspaceBounds(tuple(self.workspace_low), tuple(self.workspace_high))

    @classmethod
    def from_parameters(cls, p: dict) -> BridgeConfig:
        """The configuration the calvin_bridge node's parameters (bridge/parameters.py) describe; the
        node and the in-process graph (evaluation/inprocess.py) both build it here."""
        options = {"dataset_path": p["dataset_path"] or None} if p["backend"] == "calvin" else {}
        return cls(backend=p["backend"], clock_mode=p["clock_mode"], control_rate=p["control_rate"],
                   waypoints_per_plan=p["waypoints_per_plan"], render=p["render"], renderer=p["renderer"],
                   dynamic=p["dynamic"] or None, dynamic_speed=p["dynamic_speed"], seed=p["seed"],
                   workspace_low=tuple(p["workspace_low"]), workspace_high=tuple(p["workspace_high"]),
                   env_options=options, release_position_bounds=release_position_bounds(p))

    @property
    def period(self) -> float:
        return 1.0 / self.control_rate


@dataclass
class StepObservation:
    """Everything the bridge publishes for one control step, all with one stamp."""

    tick: int
    step: int
    stamp_ns: int
    robot_obs: np.ndarray  # (15,)
    scene_obs: np.ndarray  # (24,)
    rgb: dict[str, np.ndarray]  # camera name -> HxWx3 uint8 (empty when not rendered)
    depth: dict[str, np.ndarray]  # camera name -> HxW float32 metres
    cameras: dict[str, dict]  # camera name -> intrinsics (3x3), extrinsics (4x4 camera-to-world), width, height
    plans: int = 0  # trajectories the bridge accepted since the last reset (lockstep: policy calls)
    fuser: PointCloudFuser = field(default_factory=PointCloudFuser, repr=False)
    _points: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def rendered(self) -> bool:
        return all(name in self.rgb and name in self.depth for name in CAMERAS)

    @property
    def tcp_position(self) -> np.ndarray:
        return self.robot_obs[:3].copy()

    @property
    def tcp_quaternion(self) -> np.ndarray:
        return euler_to_quaternion(self.robot_obs[3:6])

    @property
    def joint_positions(self) -> np.ndarray:
        half_width = self.robot_obs[6] / 2
        return np.concatenate([self.robot_obs[7:14], [half_width, half_width]])

    def camera_points(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Camera ``name``'s pixels as an organised cloud: world xyz (H, W, 3) float32 (NaN where no
        depth) and the image (H, W, 3) uint8."""
        if not self.rendered:
            raise ValueError("no camera points: the simulator does not render (parameter render is false)")
        return self.fuser.organized(self.depth[name], self.cameras[name]), np.asarray(self.rgb[name], dtype=np.uint8)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Both depth images fused into one coloured world-frame cloud, (xyz float32, rgb uint8);
        computed on first use and kept."""
        if not self.rendered:
            raise ValueError("no point cloud: the simulator does not render (parameter render is false)")
        if self._points is None:
            self._points = self.fuser.fuse(self.rgb, self.depth, self.cameras)
        return self._points


# ---------------------------------------------------------------------------------------------------
# Which waypoint to execute


class TrajectoryFollower:
    """Holds the current trajectory and picks the waypoint for a step (docs/ros_graph.md).

    lockstep: a plan is accepted only if it is stamped with the observation the bridge waits on; its
    waypoints are then taken one per step, at most ``waypoints_per_plan`` of them, after which the
    bridge waits for a new plan. realtime: the newest trajectory wins; the waypoint executed at time
    ``now`` is the one due next (waypoint i is due at stamp + (i + 1) * period, so i = ceil((now -
    stamp) / period) - 1, at least 0); when it has run out, there is none and the arm holds.
    """

    def __init__(self, waypoints_per_plan: int = 1):
        if waypoints_per_plan < 1:
            raise ValueError(f"waypoints_per_plan must be >= 1, got {waypoints_per_plan}")
        self.waypoints_per_plan = waypoints_per_plan
        self.trajectory: TrajectoryArrays | None = None
        self._taken = 0
        self.accepted = 0  # plans taken since the last ``clear(count=True)``: SceneState.plans

    def clear(self, count: bool = False) -> None:
        """Drop the current plan (``count``: and start counting accepted plans again, at a reset)."""
        self.trajectory = None
        self._taken = 0
        if count:
            self.accepted = 0

    # lockstep ----------------------------------------------------------------------------------
    def needs_plan(self) -> bool:
        """True when the current plan cannot give this step's waypoint (none, used up, or budget spent)."""
        if self.trajectory is None:
            return True
        return self._taken >= min(self.waypoints_per_plan, len(self.trajectory))

    def accept_plan(self, trajectory: TrajectoryArrays, waiting_stamp_ns: int) -> bool:
        """Take ``trajectory`` as the plan for the observation stamped ``waiting_stamp_ns``; a plan made
        from any other observation is refused (False)."""
        if trajectory.stamp_ns != waiting_stamp_ns:
            return False
        self.trajectory = trajectory
        self._taken = 0
        self.accepted += 1
        return True

    @property
    def started(self) -> bool:
        """Whether the current plan has had waypoints executed (a plan just accepted has not)."""
        return self.trajectory is not None and self._taken > 0

    def next_waypoint(self) -> int | None:
        """Index of the waypoint for this lockstep step (and count it as taken), or None."""
        if self.needs_plan():
            return None
        index = self._taken
        self._taken += 1
        return index

    # realtime ----------------------------------------------------------------------------------
    def offer(self, trajectory: TrajectoryArrays) -> bool:
        """Keep ``trajectory`` if it is at least as new as the current one; False if it is older."""
        if self.trajectory is not None and trajectory.stamp_ns < self.trajectory.stamp_ns:
            return False
        self.trajectory = trajectory
        self._taken = 0
        self.accepted += 1
        return True

    def waypoint_due(self, now_ns: int) -> int | None:
        """Index of the waypoint of the newest trajectory due at ``now_ns``, or None when it has run out."""
        if self.trajectory is None:
            return None
        elapsed = (now_ns - self.trajectory.stamp_ns) * 1e-9
        # A nanosecond of slack so that a stamp exactly on a due time picks that waypoint.
        index = max(0, math.ceil(elapsed / self.trajectory.period - 1e-6) - 1)
        return index if index < len(self.trajectory) else None


# ---------------------------------------------------------------------------------------------------
# Lockstep waiting


@dataclass(frozen=True)
class Republish:
    """Publish the current observation again (same stamp, same data)."""


@dataclass(frozen=True)
class HoldStep:
    """Step the simulator once holding the pose, then publish and wait as after any step."""

    reason: str


@dataclass(frozen=True)
class Notice:
    """A line worth logging (said once per situation, not at every tick)."""

    text: str


class LockstepWatchdog:
    """When a waiting lockstep bridge re-sends its observation or gives up on a step, without ROS.

    Events in (``waiting``, ``plan_accepted``, ``instructed``, ``reset``) and ``tick(now, policies)``
    with the number of ``ee_trajectory`` publishers; commands out (:class:`Republish`,
    :class:`HoldStep`, :class:`Notice`). The rules (docs/ros_graph.md):

    - no policy publishes at all: wait without a timeout (holding would only age the episode), say so;
    - a new policy appears: re-send after ``new_policy_grace`` s (its subscriptions need matching too);
    - every ``resend_after`` s without a plan: re-send (a node that started late, or lost the cloud);
    - no instruction since the last reset: no timeout either, since no policy is due to act;
    - else ``step_timeout`` s without a plan: hold the pose for one step.
    """

    def __init__(self, step_timeout: float = 5.0, resend_after: float = 1.0, new_policy_grace: float = 0.5) -> None:
        self.step_timeout = float(step_timeout)
        self.resend_after = float(resend_after)
        self.new_policy_grace = float(new_policy_grace)
        self.waiting = False
        self._wait_started = 0.0
        self._sent_at = 0.0
        self._policies = 0
        self._resend_at: float | None = None
        self._said_no_policy = False
        self._instructed_at: float | None = None
        self._said_no_instruction = False
        self._ignored_plans = 0

    def ignored_plan(self, plan_stamp_ns: int, awaited_stamp_ns: int) -> Notice | None:
        """A plan not stamped with the awaited observation (older, or one already served) was ignored, as
        the contract says: a line at the 1st, 10th, 100th and 1000th, then every 10000th."""
        self._ignored_plans += 1
        count = self._ignored_plans
        if count not in (1, 10, 100, 1000) and count % 10000:
            return None
        return Notice(f"lockstep: ignored {count} trajectory(ies) not stamped with the awaited observation "
                      f"(last {plan_stamp_ns * 1e-9:.4f} s, awaiting {awaited_stamp_ns * 1e-9:.4f} s)")

    def wait(self, now: float) -> None:
        """The observation that needs a plan was just published."""
        self.waiting = True
        self._wait_started = self._sent_at = now

    def plan_accepted(self) -> None:
        self.waiting = False

    def instructed(self, now: float) -> None:
        if self._instructed_at is None:
            self._instructed_at = now

    def reset(self) -> None:
        """A reset: no plan is awaited until the new observation is published, nor due before an instruction."""
        self.waiting = False
        self._instructed_at, self._said_no_instruction = None, False

    def tick(self, now: float, policies: int, step: int) -> list:
        if not self.waiting:
            return []
        if policies > self._policies:
            self._resend_at = now + self.new_policy_grace
            self._said_no_policy = False
        self._policies = policies
        if policies == 0:
            self._wait_started = now
            if self._said_no_policy:
                return []
            self._said_no_policy = True
            return [Notice(f"lockstep: step {step} waits for a policy to publish ee_trajectory")]
        if self._resend_at is not None and now >= self._resend_at:
            self._resend_at = None
            self._wait_started = self._sent_at = now
            return [Republish()]
        if self.resend_after > 0 and now - self._sent_at > self.resend_after:
            # Without this a node that missed the observation (System 2 finishing its model load after it
            # went out) would leave the graph holding a step per step_timeout, for a latent that never comes.
            self._sent_at = now
            return [Republish()]
        if self._instructed_at is None:
            if self._said_no_instruction:
                return []
            self._said_no_instruction = True
            return [Notice(f"lockstep: step {step} waits for a plan; no instruction since the reset, so no "
                           "step_timeout until one comes")]
        if now - max(self._wait_started, self._instructed_at) > self.step_timeout:
            self.waiting = False
            return [HoldStep(f"no ee_trajectory for step {step} within step_timeout {self.step_timeout:g} s; "
                             "holding the pose for one step")]
        return []


class CheckGate:
    """An evaluation's step-by-step oracle, without ROS: while ``enabled`` (an evaluator set the bridge's
    ``protocol``) and armed (from an instruction until the next reset), a lockstep bridge steps past an
    observation it published only once a ``check_tasks`` call has compared it, as CALVIN's and the
    released loop both ask their oracle after every env step: the next waypoint of an open-loop plan
    waits for it, and so does the first waypoint of a new plan (a fast policy would otherwise race the
    check). A check that finds every asked task done drops the rest of a plan already under way (the
    node does that), as the released loop returns at once: the next subtask begins with a fresh policy
    call on that very state.

    Events: ``arm()`` (an instruction), ``disarm()`` (a reset), ``hold(stamp, now)`` (an observation
    went out: True when it must be checked before the world moves on), ``checked()`` (a check answered:
    True when it released a held observation), ``expired(now)`` (held longer than ``timeout`` s: the
    evaluator is gone; the bridge steps on and says so).
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = float(timeout)
        self.enabled = False
        self.armed = False
        self.held_stamp_ns: int | None = None
        self._since = 0.0

    @property
    def holding(self) -> bool:
        return self.held_stamp_ns is not None

    def arm(self) -> None:
        self.armed = True

    def disarm(self) -> None:
        self.armed = False
        self.held_stamp_ns = None

    def hold(self, stamp_ns: int, now: float) -> bool:
        if not (self.enabled and self.armed):
            return False
        self.held_stamp_ns, self._since = int(stamp_ns), now
        return True

    def checked(self) -> bool:
        held, self.held_stamp_ns = self.held_stamp_ns is not None, None
        return held

    def expired(self, now: float) -> bool:
        if self.held_stamp_ns is None or now - self._since <= self.timeout:
            return False
        self.held_stamp_ns = None
        return True


# ---------------------------------------------------------------------------------------------------
# The bridge core


class BridgeCore:
    """The simulator behind the bridge: observations, actions, resets and the task oracle."""

    def __init__(self, config: BridgeConfig | None = None, env=None, clock: Callable[[], int] = time.time_ns):
        """``env``: an already made simulator (default: ``make_env`` from the config). ``clock``: integer
        nanoseconds for realtime stamps (the node passes its ROS clock)."""
        self.config = config or BridgeConfig()
        self.clock = clock
        self.config.validate()
        if env is None:
            options = dict(self.config.env_options)
            options.setdefault("render", self.config.render)
            options.setdefault("dynamic_speed", self.config.dynamic_speed)
            if self.config.backend == "embedded":
                options.setdefault("renderer", self.config.renderer)
                options.setdefault("control_hz", self.config.control_rate)
            env = make_env(self.config.backend, dynamic=self.config.dynamic, seed=self.config.seed, **options)
        self.env = env
        self.bounds = self.config.bounds
        self.follower = TrajectoryFollower(self.config.waypoints_per_plan)
        self.protocol = "calvin"
        self._position_clip: WorkspaceBounds | None = None  # active only under the release protocol
        self.tick = 0
        self.step = 0
        self._infos: OrderedDict[int, tuple[np.ndarray, np.ndarray, dict]] = OrderedDict()
        self._probe = None  # a second, unrendered simulator for check_tasks on states not cached
        self._hold: tuple[np.ndarray, np.ndarray, float] | None = None
        geometry = getattr(self.env, "geometry", None) or scene_geometry(self.config.backend)
        self._fuser = PointCloudFuser(geometry.camera_max_depth if self.config.max_depth is None else self.config.max_depth,
                                      geometry.cloud_bounds)
        self.current: StepObservation | None = None
        self._observe(self.env.reset(seed=self.config.seed))

    # -------------------------------------------------------------------------------- clock
    def lockstep_stamp_ns(self, step: int) -> int:
        """Sim time of ``step`` in integer nanoseconds (step / control_rate s, rounded to the ns)."""
        return round(step * 1e9 / self.config.control_rate)

    def step_for_stamp(self, stamp_ns: int) -> int:
        """The env step of a lockstep stamp: round(stamp_seconds * control_rate)."""
        return round(stamp_ns * 1e-9 * self.config.control_rate)

    # -------------------------------------------------------------------------------- observations
    def _observe(self, obs: dict) -> StepObservation:
        """Turn the simulator's observation into a StepObservation for a new tick, and remember its info.
        Realtime stamps are taken now, after the simulator produced the observation."""
        self.tick += 1
        if self.config.clock_mode == "realtime":
            stamp_ns = int(self.clock())
        else:
            stamp_ns = self.lockstep_stamp_ns(self.step)
        robot_obs = np.asarray(obs["robot_obs"], dtype=np.float64).copy()
        scene_obs = np.asarray(obs["scene_obs"], dtype=np.float64).copy()
        rgb_obs, depth_obs = obs.get("rgb_obs") or {}, obs.get("depth_obs") or {}
        rgb = {n: np.asarray(rgb_obs[f"rgb_{n}"]) for n in CAMERAS if f"rgb_{n}" in rgb_obs}
        depth = {n: np.asarray(depth_obs[f"depth_{n}"], dtype=np.float32) for n in CAMERAS
                 if f"depth_{n}" in depth_obs}
        cameras = self._camera_info() if rgb else {}
        self.current = StepObservation(tick=self.tick, step=self.step, stamp_ns=int(stamp_ns),
                                       robot_obs=robot_obs, scene_obs=scene_obs, rgb=rgb, depth=depth,
                                       cameras=cameras, plans=self.follower.accepted, fuser=self._fuser)
        # Keyed by stamp; a later episode's observation with the same stamp replaces the earlier one
        # (the oracle is asked about the current episode), and start_info checks the content too.
        self._infos.pop(self.current.stamp_ns, None)
        self._infos[self.current.stamp_ns] = (robot_obs, scene_obs, self.env.get_info())
        while len(self._infos) > INFO_CACHE_SIZE:
            self._infos.popitem(last=False)
        return self.current

    def _camera_info(self) -> dict:
        info = getattr(self.env, "camera_info", None)
        if info is None:
            return {}
        cameras = info()
        # The calvin backend cannot always tell the gripper camera's pose; a cloud needs both.
        if any(cameras.get(n, {}).get("extrinsics") is None for n in CAMERAS):
            return {}
        return cameras

    # -------------------------------------------------------------------------------- acting
    def hold_action(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The action that keeps the arm where it was last sent (or, before any command since the last
        reset, where it is), with the last gripper command. Holding a fixed target, rather than the
        measured pose of each step, keeps a held arm from creeping."""
        if self._hold is None:
            robot_obs = self.current.robot_obs
            self._hold = (robot_obs[:3].copy(), robot_obs[3:6].copy(), 1.0 if robot_obs[14] > 0 else -1.0)
        position, euler, gripper = self._hold
        return position.copy(), euler.copy(), gripper

    def action_for_waypoint(self, index: int) -> tuple[np.ndarray, np.ndarray, float]:
        trajectory = self.follower.trajectory
        position, euler, gripper = waypoint_to_action(trajectory.positions[index], trajectory.quaternions[index],
                                                      float(trajectory.gripper[index]))
        if self._position_clip is not None:
            position = self._position_clip.clip(position)
        return position, euler, gripper

    def subtask_done(self) -> bool:
        """The oracle found the subtask done: drop the rest of a plan under way (it belonged to that
        subtask; the released loop returns at once). A plan made for this very state and not yet started
        is kept: asked again, the policy would answer the same. Returns whether a plan was dropped, i.e.
        a plan is needed from this state."""
        if not (self.follower.started and not self.follower.needs_plan()):
            return False
        self.follower.clear()
        return True

    def set_protocol(self, protocol: str) -> None:
        """Follow an evaluation protocol (sim/protocol.py) from the next plan on. ``release``: up to
        RELEASE_EXECUTE_LEN waypoints of each plan open-loop, positions clipped to
        ``release_position_bounds`` (when set); ``calvin`` (or ""): the configured ``waypoints_per_plan``,
        no clip. The node adds the step-by-step check (CheckGate). ValueError for an unknown protocol."""
        protocol = protocol or "calvin"
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be empty or one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        release = protocol == "release"
        self.protocol = protocol
        self.follower.waypoints_per_plan = RELEASE_EXECUTE_LEN if release else self.config.waypoints_per_plan
        self._position_clip = self.config.release_position_bounds if release else None

    def step_env(self, action: tuple[np.ndarray, np.ndarray, float] | None) -> StepObservation:
        """Advance the simulator one control step with ``action`` (None: hold) and observe."""
        if action is None:
            action = self.hold_action()
        else:
            self._hold = (np.asarray(action[0], dtype=np.float64).copy(),
                          np.asarray(action[1], dtype=np.float64).copy(), float(action[2]))
        obs, _, _, _ = self.env.step(action)
        self.step += 1
        return self._observe(obs)

    def lockstep_step(self) -> StepObservation | None:
        """One lockstep step with the current plan's next waypoint; None (nothing done) if a plan is needed."""
        index = self.follower.next_waypoint()
        if index is None:
            return None
        return self.step_env(self.action_for_waypoint(index))

    def realtime_step(self, now_ns: int | None = None) -> tuple[StepObservation, int | None]:
        """One realtime step with the waypoint due at ``now_ns`` (default: the clock now), or a hold.
        Returns the observation and the waypoint index used (None: held)."""
        index = self.follower.waypoint_due(self.clock() if now_ns is None else now_ns)
        action = self.action_for_waypoint(index) if index is not None else None
        return self.step_env(action), index

    # -------------------------------------------------------------------------------- services
    def reset(self, robot_obs: Sequence[float] = (), scene_obs: Sequence[float] = (),
              seed: int | None = None) -> StepObservation:
        """Reset the world (empty arrays: the default robot pose / a random valid scene from ``seed``).

        Raises ValueError naming a wrong length, a NaN or an impossible state; the world is then
        unchanged. A successful reset drops the current plan and starts again at step 0 (sim time 0).
        """
        robot = check_obs_vector(robot_obs, ROBOT_OBS_SIZE, "robot_obs")
        scene = check_obs_vector(scene_obs, SCENE_OBS_SIZE, "scene_obs")
        obs = self.env.reset(robot_obs=robot, scene_obs=scene, seed=seed)
        self.follower.clear(count=True)
        self._hold = None
        self.step = 0
        return self._observe(obs)

    def start_info(self, stamp_ns: int, robot_obs: Sequence[float], scene_obs: Sequence[float]) -> dict:
        """The oracle's info for a state the bridge published (looked up by its stamp), or, for a state
        it no longer remembers, rebuilt in a second unrendered simulator (embedded backend only)."""
        robot = check_obs_vector(robot_obs, ROBOT_OBS_SIZE, "start_state.robot_obs")
        scene = check_obs_vector(scene_obs, SCENE_OBS_SIZE, "start_state.scene_obs")
        if robot is None or scene is None:
            raise ValueError("start_state must carry robot_obs (15 values) and scene_obs (24 values)")
        cached = self._infos.get(int(stamp_ns))
        if cached is not None and np.allclose(cached[0], robot, atol=1e-9) \
                and np.allclose(cached[1], scene, atol=1e-9):
            return cached[2]
        if self.config.backend != "embedded":
            raise ValueError(f"start_state stamped {stamp_ns} ns is not one of the last {INFO_CACHE_SIZE} "
                             f"observations this bridge published, and the {self.config.backend} backend "
                             f"cannot rebuild contacts from robot_obs/scene_obs")
        if self._probe is None:
            self._probe = make_env("embedded", seed=self.config.seed, render=False)
        try:
            self._probe.reset(robot_obs=robot, scene_obs=scene)
        except ValueError as error:
            raise ValueError(f"start_state is not a state the simulator can rebuild: {error}") from None
        return self._probe.get_info()

    def check_tasks(self, tasks: Sequence[str], start_stamp_ns: int, start_robot_obs: Sequence[float],
                    start_scene_obs: Sequence[float]) -> list[str]:
        """The tasks of ``tasks`` completed between the start state and now, in the order asked.
        Unknown task names or an unusable start state raise ValueError."""
        tasks = list(tasks)
        from openhelix_ros.sim.tasks import check_task_names

        check_task_names(tasks)
        start = self.start_info(start_stamp_ns, start_robot_obs, start_scene_obs)
        end = self._infos[self.current.stamp_ns][2]
        done = self.env.tasks.get_task_info_for_set(start, end, set(tasks)) if tasks else set()
        return [task for task in tasks if task in done]

    def begin_subtask(self, task: str) -> None:
        """A new instruction names its CALVIN task: tell the simulator (CALVIN-D starts a block moving).
        Unknown names raise ValueError."""
        self.env.begin_subtask(task)

    def set_dynamic(self, mode: str | None, speed: float | None = None) -> None:
        """Switch CALVIN-D on (left/forward/diagonal/circle) or off (None / ""); takes effect at the next
        ``begin_subtask``."""
        mode = mode or None
        if mode is not None and mode not in DYNAMIC_MODES:
            raise ValueError(f"dynamic must be empty or one of {DYNAMIC_MODES}, got {mode!r}")
        if speed is not None and not speed >= 0:
            raise ValueError(f"dynamic_speed must be >= 0 m/s, got {speed}")
        if hasattr(self.env, "set_dynamic"):
            self.env.set_dynamic(mode, speed)
        else:  # the calvin backend keeps them as plain attributes
            self.env.dynamic = mode
            if speed is not None:
                self.env.dynamic_speed = speed
        self.config.dynamic = mode
        if speed is not None:
            self.config.dynamic_speed = speed

    def close(self) -> None:
        for env in (self.env, self._probe):
            close = getattr(env, "close", None)
            if close is not None:
                close()
