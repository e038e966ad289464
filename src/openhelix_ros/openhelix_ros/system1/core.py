"""System 1 without ROS: load the policy, keep the goal latents System 2 sent, pick the one a plan
must use (docs/ros_graph.md: exact Asy(N) in lockstep, the newest in realtime), refuse stale ones, and
turn a point cloud + end-effector pose + latent into a clipped, speed-limited absolute trajectory.

The ``system1`` node (system1/node.py) converts messages and calls this; tests and the graph bench
drive it directly. Never imports rclpy.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.safety import LatentAgeGate, SafetyFilter, SafetyResult
from openhelix_ros.common.timing import CLOCK_MODES, RepeatLimiter, latent_step_for_plan, stamp_to_step
from openhelix_training.goal import LatentGoal, LatentGoalError, check_latent_goal

SYSTEM1_CONFIGS = ("tiny", "default")
# 3D Diffuser Actor's presets (openhelix_training's DiffuserActorConfig): camera policies, which plan from
# each camera's organised cloud (camera/<name>/points) instead of the fused `points`
CAMERA_SYSTEM1_CONFIGS = ("tiny-3dda", "3dda", "3dda-nhist3", "openhelix-policy")


def check_latent_dims(system1_dim: int, system2_dim: int, system1_id: str = "System 1",
                      system2_id: str = "System 2") -> None:
    """Raise a ValueError that says what to change when the two systems disagree on the latent size."""
    if int(system1_dim) != int(system2_dim):
        raise ValueError(
            f"latent size mismatch: {system1_id} is conditioned on {system1_dim}-D goal latents but {system2_id} "
            f"produces {system2_dim}-D ones; use configurations trained together (tiny with tiny, default with "
            "embedded or llava-1.5-7b) or one training checkpoint for both")


# ---------------------------------------------------------------------------------------------------
# Latents received, and which one a plan uses


@dataclass(frozen=True)
class LatentRecord:
    """A GoalLatent as System 1 keeps it. Stamps in integer nanoseconds of the sender's clock;
    ``received`` is this process's monotonic time at arrival (used to forget latents of a world that
    was reset, see :meth:`LatentHistory.forget_received_before`)."""

    latent: LatentGoal  # the token matrix (and coarse actions), checked against this System 1
    sequence: int
    stamp_ns: int  # GoalLatent.header.stamp: goes into EETrajectory.latent_stamp
    observation_stamp_ns: int  # stamp of the image it encodes: the latent's age is measured from it
    instruction: str = ""
    received: float = 0.0


class LatentHistory:
    """The last ``capacity`` latents, keyed by the step (lockstep) or stamp of the image they encode."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"latent history capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._by_stamp: OrderedDict[int, LatentRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_stamp)

    def add(self, record: LatentRecord) -> None:
        # A second latent for the same image (a new instruction, say) replaces the first: it is newer.
        self._by_stamp.pop(record.observation_stamp_ns, None)
        self._by_stamp[record.observation_stamp_ns] = record
        while len(self._by_stamp) > self.capacity:
            self._by_stamp.popitem(last=False)

    def newest(self) -> LatentRecord | None:
        """The latent received last (System 2 publishes in observation order, so also the newest image)."""
        return next(reversed(self._by_stamp.values()), None)

    def at_step(self, step: int, control_rate: float) -> LatentRecord | None:
        for stamp, record in reversed(self._by_stamp.items()):
            if stamp_to_step(stamp, control_rate) == step:
                return record
        return None

    def latest_at_or_before(self, step: int, control_rate: float) -> LatentRecord | None:
        """The latent of the latest observation step <= ``step``, if any."""
        best = None
        for stamp, record in self._by_stamp.items():
            s = stamp_to_step(stamp, control_rate)
            if s <= step and (best is None or s > stamp_to_step(best.observation_stamp_ns, control_rate)):
                best = record
        return best

    def earliest_at_or_before(self, step: int, control_rate: float) -> LatentRecord | None:
        """The latent of the earliest observation step <= ``step``, if any."""
        candidates = [(stamp_to_step(stamp, control_rate), record) for stamp, record in self._by_stamp.items()]
        candidates = [(s, record) for s, record in candidates if s <= step]
        return min(candidates, key=lambda item: item[0])[1] if candidates else None

    def forget_received_before(self, monotonic_time: float) -> int:
        """Drop latents that arrived before ``monotonic_time``; returns how many."""
        old = [stamp for stamp, record in self._by_stamp.items() if record.received < monotonic_time]
        for stamp in old:
            del self._by_stamp[stamp]
        return len(old)

    def stamps(self) -> list[int]:
        """Observation stamps of the latents held, oldest received first."""
        return list(self._by_stamp)

    def clear(self) -> None:
        self._by_stamp.clear()


@dataclass(frozen=True)
class LatentChoice:
    """Which latent a plan uses. ``record`` None and ``wait`` True: lockstep, the latent Asy(N) requires
    has not arrived yet (wait and ask again); ``record`` None and ``wait`` False: plan nothing."""

    record: LatentRecord | None
    wait: bool
    reason: str
    required_step: int | None = None
    exact: bool = True


class LatentSelector:
    """The latent rule of docs/ros_graph.md plus the ``max_latent_age`` gate.

    lockstep: planning at step ``t`` uses the latent of step ``latent_step_for_plan(t, N)``; when it has
    not arrived the caller waits (bounded) and then asks with ``fallback=True``, which takes the latent
    of the latest step before the required one (or, when there is none, the earliest one up to ``t``)
    and says so (``exact`` False) rather than stalling. No wait when a later step's latent is already
    here: System 2 works in step order, so the required one was lost.
    realtime: the newest latent.
    """

    def __init__(self, clock_mode: str = "realtime", latent_period_steps: int = 0, control_rate: float = 30.0,
                 max_latent_age: float = 2.0, capacity: int = 64) -> None:
        if clock_mode not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {', '.join(CLOCK_MODES)}, got {clock_mode!r}")
        if latent_period_steps < 0:
            raise ValueError(f"latent_period_steps must be >= 0, got {latent_period_steps}")
        if not control_rate > 0:
            raise ValueError(f"control_rate must be > 0 Hz, got {control_rate}")
        self.clock_mode = clock_mode
        self.latent_period_steps = int(latent_period_steps)
        self.control_rate = float(control_rate)
        self.history = LatentHistory(capacity)
        self.gate = LatentAgeGate(max_latent_age)

    def add(self, record: LatentRecord) -> None:
        self.history.add(record)

    def choose(self, plan_stamp_ns: int, fallback: bool = False) -> LatentChoice:
        if self.clock_mode == "realtime":
            newest = self.history.newest()
            if newest is None:
                return LatentChoice(None, False, "no goal latent received yet")
            return LatentChoice(newest, False, f"newest latent (sequence {newest.sequence})")
        step = stamp_to_step(plan_stamp_ns, self.control_rate)
        required = latent_step_for_plan(step, self.latent_period_steps)
        record = self.history.at_step(required, self.control_rate)
        if record is not None:
            return LatentChoice(record, False, f"latent of step {required} for step {step}", required)
        # System 2 encodes its steps in order: once a later step's latent is here, the required one will
        # never come (its image was lost, or System 2 started after it), so waiting would only stall.
        lost = any(stamp_to_step(stamp, self.control_rate) > required for stamp in self.history.stamps())
        if not fallback and not lost:
            return LatentChoice(None, True, f"waiting for the latent of step {required} (planning step {step}, "
                                            f"Asy({self.latent_period_steps}))", required)
        older = self.history.latest_at_or_before(required, self.control_rate)
        if older is None:
            # Nothing that old: typically System 2 came up after the episode's first images. The earliest
            # latent of this episode up to the current step is too young for Asy(N), but planning with it
            # beats holding the arm for a bridge step_timeout on every step of the next period.
            older = self.history.earliest_at_or_before(step, self.control_rate)
            if older is None:
                return LatentChoice(None, False, f"no latent of step {step} or earlier arrived for step {step}",
                                    required, exact=False)
        older_step = stamp_to_step(older.observation_stamp_ns, self.control_rate)
        return LatentChoice(older, False, f"latent of step {required} missing for step {step}: used the one of "
                                          f"step {older_step} (Asy({self.latent_period_steps}) not exact here)",
                            required, exact=False)

    def check_age(self, record: LatentRecord | None, now_ns: int):
        """The gate's decision (``gate.changed`` tells whether to log)."""
        return self.gate.check(None if record is None else record.observation_stamp_ns, now_ns)


# ---------------------------------------------------------------------------------------------------
# When to plan, and with which inputs


@dataclass(frozen=True)
class Notice:
    """A line for the node's log: ``level`` is info, warning or error."""

    level: str
    text: str


@dataclass(frozen=True)
class PlanRequest:
    """One plan to compute: the cloud, and the pose, openness and latent chosen for it. For a camera
    policy ``xyz`` and ``rgb`` are dicts camera name -> its organised cloud (H, W, 3) and image."""

    stamp_ns: int
    xyz: np.ndarray
    rgb: np.ndarray | None
    arrival: float
    position: np.ndarray
    quaternion: np.ndarray
    gripper_open: float
    latent: LatentRecord


@dataclass(frozen=True)
class SchedulerStep:
    """What :meth:`PlanScheduler.step` decided: lines to log, and a plan to compute or, with ``plan``
    None, how many seconds may pass before asking again (sooner when an input comes)."""

    notices: tuple[Notice, ...]
    plan: PlanRequest | None = None
    wait: float = 0.5


@dataclass
class _Cloud:
    stamp_ns: int
    xyz: np.ndarray
    rgb: np.ndarray | None
    arrival: float


@dataclass
class _Pending:
    """The cloud being prepared for a plan: lockstep may wait for its latent, then for its pose."""

    cloud: _Cloud
    started: float
    first_choice: LatentChoice | None = None
    choice: LatentChoice | None = None
    pose_deadline: float = 0.0


class PlanScheduler:
    """System 1's inputs and timing, without ROS: clouds, poses, finger openness and latents go in;
    :meth:`step` (wall-clock ``now`` and the node clock's ``clock_ns``) says what to plan.

    realtime: at most one plan per ``replan_period`` s (0: whenever a new cloud came), on the newest
    cloud with the newest pose and latent; the latent's age is measured on ``clock_ns``.
    lockstep: every cloud is a step the bridge waits on. The newest one is planned with the exact
    Asy(N) latent, waiting up to ``wait_timeout`` s for it (then the latest earlier latent, logged as not
    exact; a newer cloud arriving meanwhile means the bridge gave up on this step, so that one is
    planned instead), and with the ``ee_pose`` of the same stamp (waiting for it as well, 0.2 s once
    poses flow). Age is measured on the cloud's stamp. A cloud whose stamp was already answered (the
    bridge re-sends an observation it got no plan for) is not planned twice; sim time going back (a
    reset) forgets the latents and poses of the previous episode.
    """

    def __init__(self, selector: LatentSelector, replan_period: float = 0.0, wait_timeout: float = 3.0,
                 cloud_capacity: int = 8, pose_capacity: int = 64) -> None:
        if replan_period < 0:
            raise ValueError(f"replan_period must be >= 0 s, got {replan_period}")
        if wait_timeout < 0:
            raise ValueError(f"wait_timeout must be >= 0 s, got {wait_timeout}")
        self.selector = selector
        self.lockstep = selector.clock_mode == "lockstep"
        self.replan_period = float(replan_period)
        self.wait_timeout = float(wait_timeout)
        self._clouds: deque[_Cloud] = deque(maxlen=cloud_capacity)
        self._pose_capacity = int(pose_capacity)
        self._poses: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._gripper_open: float | None = None
        self._last_cloud: tuple[int, float] | None = None  # stamp and arrival of the newest cloud
        self._last_planned: int | None = None  # stamp of the last cloud a trajectory was published for
        self._next_slot: float | None = None
        self._pending: _Pending | None = None
        self._now = 0.0
        self._said: set[str] = set()
        self._pose_repeats = RepeatLimiter(5.0, clock=lambda: self._now)  # a missing pose every 5 s at most
        # With no latent at all (no instruction yet) the bridge re-sends its observation every
        # resend_after s: say so every 30 s, not at every re-send.
        self._idle_repeats = RepeatLimiter(30.0, clock=lambda: self._now)

    # ----- inputs ---------------------------------------------------------------------------------------

    def on_points(self, stamp_ns: int, xyz: np.ndarray, rgb: np.ndarray | None, now: float) -> list[Notice]:
        notices = []
        if self.lockstep and self._last_cloud is not None and stamp_ns < self._last_cloud[0]:
            # Sim time went back: the world was reset. Latents of the old episode share step numbers with
            # the new one, so forget them (new ones arrive only after this cloud's predecessor).
            forgotten = self.selector.history.forget_received_before(self._last_cloud[1])
            self._poses.clear()
            self._last_planned = None  # a stamp of the old episode; the new one's may repeat it
            notices.append(Notice("info", f"sim time went back to {stamp_ns * 1e-9:.3f} s (a reset): forgot "
                                          f"{forgotten} latent(s) of the previous episode"))
        self._last_cloud = (stamp_ns, now)
        self._clouds.append(_Cloud(stamp_ns, xyz, rgb, now))
        return notices

    def on_pose(self, stamp_ns: int, position: np.ndarray, quaternion: np.ndarray) -> None:
        self._poses[stamp_ns] = (position, quaternion)
        while len(self._poses) > self._pose_capacity:
            self._poses.popitem(last=False)

    def on_gripper(self, openness: float) -> None:
        self._gripper_open = float(openness)

    def on_latent(self, record: LatentRecord) -> None:
        self.selector.add(record)

    def planned(self, stamp_ns: int, published: bool) -> None:
        """Report the outcome of a plan :meth:`step` asked for; only a published one counts as answered
        (a cloud whose plan published nothing, the gate being closed say, is planned again if re-sent)."""
        if published:
            self._last_planned = stamp_ns

    # ----- decisions ------------------------------------------------------------------------------------

    def step(self, now: float, clock_ns: int) -> SchedulerStep:
        self._now = now
        notices: list[Notice] = []
        while True:  # again only when the cloud in hand was given up: then the next one is looked at
            if self._pending is None:
                wait = self._take_cloud(now, notices)
                if wait is not None:
                    return SchedulerStep(tuple(notices), wait=wait)
            if self.lockstep:
                outcome = self._prepare_lockstep(now, notices)
            else:
                outcome = self._prepare_realtime(clock_ns, notices)
            if isinstance(outcome, float):
                return SchedulerStep(tuple(notices), wait=outcome)
            self._pending = None
            if outcome is not None:
                return SchedulerStep(tuple(notices), plan=outcome)

    def _take_cloud(self, now: float, notices: list[Notice]) -> float | None:
        """Make the newest cloud the pending one; or the seconds to wait when there is none to plan yet."""
        if self._clouds and self._clouds[-1].stamp_ns == self._last_planned:
            self._clouds.clear()  # a re-sent observation that was already answered
        if not self._clouds:
            return 0.5
        if not self.lockstep and self.replan_period > 0:
            if self._next_slot is not None and now < self._next_slot:
                return self._next_slot - now
            # The next slot keeps the rhythm (a late plan does not push every later one back).
            self._next_slot = max((now if self._next_slot is None else self._next_slot) + self.replan_period, now)
        skipped = len(self._clouds) - 1
        cloud = self._clouds[-1]
        self._clouds.clear()
        if self.lockstep and skipped:
            notices.append(Notice("warning", f"{skipped} cloud(s) arrived while planning; planning the newest "
                                             f"(step {stamp_to_step(cloud.stamp_ns, self.selector.control_rate)})"))
        self._pending = _Pending(cloud, started=now)
        return None

    def _prepare_realtime(self, clock_ns: int, notices: list[Notice]) -> PlanRequest | None:
        choice = self.selector.choose(self._pending.cloud.stamp_ns)
        if not self._poses:
            self._say_once("no_pose", "no ee_pose received yet: cannot plan (need the current pose)", notices)
            return None
        return self._request(choice, next(reversed(self._poses.values())), clock_ns, notices)

    def _prepare_lockstep(self, now: float, notices: list[Notice]) -> PlanRequest | float | None:
        """A plan, the seconds to wait for its latent or pose, or None when this cloud gets no plan."""
        pending = self._pending
        stamp = pending.cloud.stamp_ns
        if pending.choice is None:
            choice = self.selector.choose(stamp)
            if pending.first_choice is None:
                pending.first_choice = choice
            waited = now - pending.started
            if choice.wait:
                if self._clouds and self._clouds[-1].stamp_ns != stamp:
                    # The bridge gave up on this step (its step_timeout) and went on: plan the new one.
                    notices.append(Notice("warning", f"{pending.first_choice.reason}: a newer cloud came after "
                                                     f"{waited:.2f} s, planning that one"))
                    return None
                if self._clouds:
                    # The same stamp again: a re-send (the same cloud), or a reset back to that step (the
                    # bridge's first scene at step 0, then the evaluator's): plan the newest one's points.
                    pending.cloud = self._clouds[-1]
                    self._clouds.clear()
                if waited < self.wait_timeout:
                    return self.wait_timeout - waited
            if pending.first_choice.wait:
                choice = self.selector.choose(stamp, fallback=True)
                if choice.exact and waited > 0.5:
                    # Short waits are the normal lockstep rhythm (System 2 still encoding); long ones are
                    # worth a line, since the whole simulation waits with System 1.
                    notices.append(Notice("info", f"{pending.first_choice.reason}: waited {waited:.2f} s"))
            else:
                waited = 0.0
            if not choice.exact and (choice.record is not None or self._idle_repeats.should_log("none", choice.reason)):
                notices.append(Notice("warning", choice.reason + (f" (after waiting {waited:.2f} s)" if waited else "")))
            pending.choice = choice
            pending.pose_deadline = now + (0.2 if self._poses else self.wait_timeout)
        pose = self._poses.get(stamp)
        if pose is None:
            if now < pending.pose_deadline:
                return pending.pose_deadline - now
            if not self._poses:
                self._say_once("no_pose", "no ee_pose received yet: cannot plan (need the current pose)", notices)
                return None
            if self._pose_repeats.should_log("pose", "no ee_pose of the cloud's stamp"):
                notices.append(Notice("warning", f"no ee_pose stamped {stamp * 1e-9:.3f} s: using the newest one"))
            pose = next(reversed(self._poses.values()))
        return self._request(pending.choice, pose, stamp, notices)  # the cloud's sim time is the active clock

    def _request(self, choice: LatentChoice, pose, now_ns: int, notices: list[Notice]) -> PlanRequest | None:
        decision = self.selector.check_age(choice.record, now_ns)
        if self.selector.gate.changed:
            notices.append(Notice("info", f"moving the arm again: {decision.reason}") if decision.allowed else
                           Notice("warning", f"stopped moving the arm (no trajectory published): {decision.reason}"))
        if not decision.allowed:
            return None
        if self._gripper_open is None:
            self._say_once("no_gripper", "no finger joint states yet: the gripper counts as open", notices)
        cloud = self._pending.cloud
        return PlanRequest(cloud.stamp_ns, cloud.xyz, cloud.rgb, cloud.arrival, pose[0], pose[1],
                           1.0 if self._gripper_open is None else self._gripper_open, choice.record)

    def _say_once(self, key: str, text: str, notices: list[Notice]) -> None:
        if key not in self._said:
            self._said.add(key)
            notices.append(Notice("warning", text))



# ---------------------------------------------------------------------------------------------------
# Proprioception


def gripper_openness_from_width(width: float, open_width: float) -> float:
    """1.0 (open) when the fingers are at least ``open_width`` apart, else 0.0 (closed or holding)."""
    return 1.0 if width >= open_width else 0.0


def finger_width(names: list[str], positions: list[float], finger_joints: list[str]) -> float | None:
    """The gripper's opening width (m): the sum of the positions of the ``finger_joints`` a JointState
    names. None when it names none of them; ValueError for names and positions that do not pair up or a
    width that is not finite."""
    index = {name: i for i, name in enumerate(names)}
    present = [name for name in finger_joints if name in index]
    if not present:
        return None
    if len(positions) != len(names):
        raise ValueError(f"{len(names)} names but {len(positions)} positions")
    width = float(sum(positions[index[name]] for name in present))
    if not np.isfinite(width):
        raise ValueError("finger joint position is NaN or infinite")
    return width


def proprio_from_pose(position: np.ndarray, quaternion_xyzw: np.ndarray, gripper_open: float) -> np.ndarray:
    """EE pose (world, quaternion x, y, z, w) + openness -> the 10-D proprioception System 1 reads
    (xyz, 6D rotation = first two columns of the rotation matrix, openness in [0, 1]), the layout of
    openhelix_training's proprio_from_robot_obs."""
    from openhelix_training.geometry import pose_to_proprio

    position = np.asarray(position, dtype=np.float64)
    quaternion = np.asarray(quaternion_xyzw, dtype=np.float64)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise ValueError(f"end-effector position must be 3 finite numbers, got {position.tolist()}")
    if quaternion.shape != (4,) or not np.all(np.isfinite(quaternion)) or np.linalg.norm(quaternion) < 1e-6:
        raise ValueError(f"end-effector orientation must be a finite non-zero quaternion, got {quaternion.tolist()}")
    rotation = Rotation.from_quat(quaternion / np.linalg.norm(quaternion)).as_matrix()
    return pose_to_proprio(position, rotation, float(np.clip(gripper_open, 0.0, 1.0)))


class CameraFrameAssembler:
    """Pairs the organised clouds of a camera policy's cameras into frames: one frame per stamp, complete
    when every camera's cloud of that stamp has come (the bridge publishes them together). Older
    incomplete stamps are dropped once a newer frame completes; a stamp earlier than the last complete
    one means the world was reset."""

    def __init__(self, cameras: tuple[str, ...], capacity: int = 8) -> None:
        if not cameras:
            raise ValueError("a camera frame needs at least one camera")
        self.cameras = tuple(cameras)
        self.capacity = capacity
        self._pending: OrderedDict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = OrderedDict()
        self._last_complete: int | None = None

    def add(self, camera: str, stamp_ns: int, xyz: np.ndarray, rgb: np.ndarray):
        """(frame or None, reset): the frame ``({camera: xyz}, {camera: rgb})`` once complete, and whether
        this stamp went back in time (a reset: the caller forgets per-episode state)."""
        if camera not in self.cameras:
            raise ValueError(f"unknown camera {camera!r} (this policy reads {', '.join(self.cameras)})")
        reset = self._last_complete is not None and stamp_ns < self._last_complete
        if reset:
            self._pending.clear()
            self._last_complete = None
        views = self._pending.setdefault(stamp_ns, {})
        views[camera] = (xyz, rgb)
        while len(self._pending) > self.capacity:
            self._pending.popitem(last=False)
        if len(views) < len(self.cameras):
            return None, reset
        for stamp in [s for s in self._pending if s <= stamp_ns]:
            del self._pending[stamp]
        self._last_complete = stamp_ns
        return ({name: views[name][0] for name in self.cameras},
                {name: views[name][1] for name in self.cameras}), reset


# ---------------------------------------------------------------------------------------------------
# The policy


@dataclass(frozen=True)
class PlanResult:
    """A trajectory ready for EETrajectory: absolute world-frame poses after the safety filter."""

    positions: np.ndarray  # (T, 3)
    quaternions: np.ndarray  # (T, 4) x, y, z, w
    gripper: np.ndarray  # (T,) +1 open / -1 close
    period: float  # seconds between waypoints
    inference_time: float  # seconds of wall clock in the model
    raw_positions: np.ndarray  # (T, 3) as predicted, before the safety filter
    safety: SafetyResult


class TemporalEnsemble:
    """Temporal ensembling of overlapping plans (RoboDual's specialist, after ACT): the waypoint a plan
    sends for a future control slot is the weighted mean of what the last ``plans`` plans predicted for
    that slot, with ACT's weights w_i = exp(-decay * i), i = 0 the oldest prediction.

    A plan stamped t has its waypoint j due at slot round(t / period) + 1 + j. Positions are averaged,
    rotations as sign-aligned quaternions (normalised), the gripper as the sign of the weighted mean of
    its +-1 commands. Time going back (a reset world) forgets every plan; a plan for the same observation
    again replaces the earlier one."""

    def __init__(self, plans: int = 8, decay: float = 0.1, waypoint_period: float = 1.0 / 30.0) -> None:
        if plans < 1:
            raise ValueError(f"temporal ensemble needs at least 1 plan, got {plans}")
        if not decay >= 0:
            raise ValueError(f"temporal ensemble decay must be >= 0, got {decay}")
        self.plans, self.decay, self.period = int(plans), float(decay), float(waypoint_period)
        self._buffer: deque = deque(maxlen=self.plans)  # (first slot, positions, quaternions, gripper)
        self._reset = False

    def reset(self) -> None:
        """Forget every plan before the next one. Only flags it: a node calls this from a subscription while
        its worker may be inside apply()."""
        self._reset = True

    def apply(self, stamp_ns: int, positions: np.ndarray, quaternions: np.ndarray,
              gripper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        first = round(stamp_ns * 1e-9 / self.period) + 1
        if self._reset or (self._buffer and first < self._buffer[-1][0]):
            self._reset = False
            self._buffer.clear()  # a new episode, or the clock went back (a reset world)
        elif self._buffer and first == self._buffer[-1][0]:
            self._buffer.pop()  # the same observation planned again (its plan went unpublished): replace it
        self._buffer.append((first, np.asarray(positions, np.float64), np.asarray(quaternions, np.float64),
                             np.asarray(gripper, np.float64)))
        out_p, out_q, out_g = (np.array(a, dtype=np.float64) for a in (positions, quaternions, gripper))
        for j in range(len(out_p)):
            slot, weights, ps, qs, gs = first + j, [], [], [], []
            for age, (start, p, q, g) in enumerate(self._buffer):  # oldest first: ACT's i
                k = slot - start
                if 0 <= k < len(p):
                    weights.append(np.exp(-self.decay * age))
                    ps.append(p[k])
                    qs.append(q[k] if np.dot(q[k], out_q[j]) >= 0 else -q[k])
                    gs.append(g[k])
            w = np.asarray(weights) / np.sum(weights)
            out_p[j] = w @ np.asarray(ps)
            mean_q = w @ np.asarray(qs)
            out_q[j] = mean_q / np.linalg.norm(mean_q)
            out_g[j] = 1.0 if w @ np.asarray(gs) >= 0 else -1.0
        return out_p, out_q, out_g


class System1Core:
    """A loaded System 1 with its safety filter and inference settings."""

    def __init__(self, model, model_id: str, safety: SafetyFilter | None = None,
                 num_inference_steps: int = 0, waypoint_period: float = 1.0 / 30.0,
                 drop_first_waypoint: bool = True, seed: int = 0, ensemble: TemporalEnsemble | None = None) -> None:
        from openhelix_training import DiffuserActor

        # A camera policy (3D Diffuser Actor) reads each camera's organised cloud, and so does a 2D image
        # policy (it takes only their colours: the pixels of each camera); any other System 1 the fused cloud.
        self.is_diffuser_actor = isinstance(model, DiffuserActor)
        self.reads_images = not self.is_diffuser_actor and model.config.scene_encoder == "image"
        self.reads_cameras = self.is_diffuser_actor or self.reads_images
        if not self.reads_cameras and model.config.scene_encoder != "points":
            raise ValueError(
                f"System 1 {model_id!r} reads per-camera RGB-D (scene_encoder={model.config.scene_encoder!r}); the "
                "system1 node plans from the fused `points` cloud (or, for an image policy, the cameras' pixels): "
                "use a model with scene_encoder 'points' or 'image' (train with system1.overrides.scene_encoder="
                "points, e.g. on the project's rosbags)")
        if not waypoint_period > 0:
            raise ValueError(f"waypoint_period must be > 0 s, got {waypoint_period}")
        steps = model.config.diffusion_timesteps if self.is_diffuser_actor else model.config.num_train_timesteps
        if num_inference_steps < 0 or num_inference_steps > steps:
            raise ValueError(f"num_inference_steps must be in 0..{steps} "
                             f"(0: the model's default {model.config.num_inference_steps}), got {num_inference_steps}")
        if self.is_diffuser_actor and num_inference_steps and num_inference_steps != model.config.num_inference_steps:
            # fewer steps than the release's 25 DDPM steps: DDIM over the same noise schedules
            model.config.inference_scheduler = "ddpm" if num_inference_steps == steps else "ddim"
            model.config.num_inference_steps = int(num_inference_steps)
            model.config.validate()
        self.model = model
        self.model.eval()
        self.model_id = model_id
        self.safety = safety or SafetyFilter()
        self.num_inference_steps = int(num_inference_steps) or int(model.config.num_inference_steps)
        self.waypoint_period = float(waypoint_period)
        self.ensemble = ensemble  # None: every plan as predicted
        # The default model's waypoint 0 is the current pose (trajectories are resampled from the current
        # frame to the next keypose, both ends included); executing it would hold the arm in place, so it
        # is dropped as 3D Diffuser Actor does on CALVIN. 3D Diffuser Actor's own predictions already
        # start after it (19 of its 20 interpolated waypoints).
        self.drop_first_waypoint = bool(drop_first_waypoint) and not isinstance(model, DiffuserActor)
        self.seed = int(seed)
        # a camera policy's proprioception history: the newest (position, CALVIN Euler angles) per plan
        self._history: deque = deque(maxlen=int(getattr(model.config, "nhist", 1)))
        self._history_reset = False

    @property
    def camera_names(self) -> tuple[str, ...]:
        """The cameras a camera policy reads, in its order (empty for a fused-cloud policy)."""
        return tuple(self.model.config.camera_names) if self.reads_cameras else ()

    def reset_history(self) -> None:
        """Forget the proprioception history (a new episode); the next plan starts it with copies of its
        own pose, as the release's evaluation does at the start of a subtask. Only flags it: the node
        calls this from a subscription while its worker may be planning."""
        self._history_reset = True
        if self.ensemble is not None:
            self.ensemble.reset()

    @classmethod
    def load(cls, model: str = "tiny", checkpoint: str = "", **kwargs) -> System1Core:
        """Build System 1 from a configuration name (``tiny`` | ``default``, always with the point-cloud
        scene encoder since the node reads ``points``) or from ``checkpoint`` (a model directory, a
        training checkpoint or a training run's output directory), which wins when given."""
        from openhelix_training import System1
        from openhelix_training.checkpoint import (
            SYSTEM1_MODEL_TYPE,
            find_model_directory,
            load_model_directory,
        )

        if checkpoint:
            path = Path(checkpoint).expanduser()
            if not path.exists():
                raise ValueError(f"System 1 checkpoint {path} does not exist")
            # System 1's directory alone: a training checkpoint's System 2 is not needed here
            directory = find_model_directory(path, SYSTEM1_MODEL_TYPE)
            if directory is None:
                raise ValueError(f"checkpoint {path} holds no System 1 (it is a System 2 checkpoint)")
            instance = load_model_directory(directory)
            model_id = str(path)
        else:
            known = SYSTEM1_CONFIGS + CAMERA_SYSTEM1_CONFIGS
            if model not in known:
                raise ValueError(f"unknown System 1 configuration {model!r}; choose from {', '.join(known)} "
                                 "or give a checkpoint directory")
            import torch

            from openhelix_training import DiffuserActor

            # Untrained weights from the node's seed, as System 2 builds its own: the same untrained
            # graph behaves the same in every run, and the caller's global RNG is left as it was.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(kwargs.get("seed", 0)))
                if model in CAMERA_SYSTEM1_CONFIGS:
                    instance = DiffuserActor.from_config(model)
                else:
                    instance = System1.from_config(model, scene_encoder="points")
            model_id = model
        return cls(instance, model_id, **kwargs)

    @property
    def latent_dim(self) -> int:
        return int(self.model.config.latent_dim)

    def describe_goal(self) -> str:
        """What this System 1 reads of a goal, for its start-up line ("512-D latents", "32-D latent tokens,
        4 coarse actions", ...)."""
        config = self.model.config
        text = (f"{self.latent_dim}-D latent tokens" if getattr(config, "latent_layout", "split") == "tokens"
                else f"{self.latent_dim}-D latents")
        if getattr(config, "coarse_actions", 0):
            text += f", {config.coarse_actions} coarse actions"
        if self.reads_images:
            text += ", camera images"
        return text

    def check_latent(self, latent) -> LatentGoal:
        """The goal as this System 1 reads it, from a LatentGoal or a plain vector (one token); ValueError
        naming what does not fit: the token matrix's shape, its values, the coarse actions."""
        goal = latent if isinstance(latent, LatentGoal) else LatentGoal(
            tokens=np.asarray(latent, dtype=np.float32).reshape(1, -1))
        config = self.model.config
        who = f"System 1 ({self.model_id})"
        try:
            goal = check_latent_goal(goal, coarse_actions=int(getattr(config, "coarse_actions", 0)))
        except LatentGoalError as error:
            raise ValueError(f"{error} ({who})") from error
        if getattr(config, "latent_layout", "split") == "tokens":
            if goal.token_dim != self.latent_dim:
                raise ValueError(f"goal latent tokens are {goal.token_dim}-D ({goal.describe()}) but {who} takes "
                                 f"{self.latent_dim}-D tokens")
            if goal.num_tokens > config.max_latent_tokens:
                raise ValueError(f"goal latent has {goal.num_tokens} tokens, more than {who}'s max_latent_tokens="
                                 f"{config.max_latent_tokens}")
            return goal
        if goal.tokens.size != self.latent_dim:
            check_latent_dims(self.latent_dim, goal.tokens.size, who, "the goal latent")
        # A camera policy reads its instruction as a token matrix; any other one a single vector.
        rows = (1, int(getattr(config, "instruction_length", 1)))
        if goal.num_tokens not in rows:
            raise ValueError(f"goal latent is a {goal.describe()} matrix but {who} reads "
                             + (f"{rows[1]} tokens of {config.instruction_dim}" if self.is_diffuser_actor
                                else f"one {self.latent_dim}-D token"))
        return goal

    def plan(self, xyz: np.ndarray, rgb: np.ndarray | None, position: np.ndarray, quaternion_xyzw: np.ndarray,
             gripper_open: float, latent, stamp_ns: int | None = None) -> PlanResult:
        """One trajectory from a world-frame cloud, the current EE pose and a goal (a LatentGoal, or one
        latent vector). A camera
        policy takes ``xyz`` and ``rgb`` as dicts camera name -> its organised cloud (H, W, 3) and image.

        ``stamp_ns``: the observation's stamp, which places the plan in time for the temporal ensemble
        (without it, or without an ensemble, the plan goes out as predicted).

        Raises ValueError naming the problem (no points, no colour, bad pose, bad latent, a prediction
        with NaN); nothing unsafe comes back.
        """
        if self.reads_images:
            return self._plan_from_images(rgb, position, quaternion_xyzw, gripper_open, latent, stamp_ns)
        if self.reads_cameras:
            return self._plan_from_cameras(xyz, rgb, position, quaternion_xyzw, latent, stamp_ns)
        from openhelix_training import Observation

        xyz = np.asarray(xyz, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"points must be (N, 3), got {xyz.shape}")
        finite = np.all(np.isfinite(xyz), axis=1)
        if not np.any(finite):
            raise ValueError("point cloud has no finite point")
        if rgb is None:
            raise ValueError("point cloud has no rgb field: System 1 embeds every point's colour")
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape:
            raise ValueError(f"point colours must be (N, 3) like the points {xyz.shape}, got {rgb.shape}")
        if not np.all(finite):
            xyz, rgb = xyz[finite], rgb[finite]
        latent = self.check_latent(latent)
        proprio = proprio_from_pose(position, quaternion_xyzw, gripper_open)
        observation = Observation(points=xyz, colors=rgb)
        start = time.perf_counter()
        trajectory = self.model.predict(observation, latent, proprio, num_inference_steps=self.num_inference_steps,
                                        seed=self.seed)
        elapsed = time.perf_counter() - start
        first = 1 if self.drop_first_waypoint and len(trajectory.positions) > 1 else 0
        return self._safe_plan(trajectory.positions[first:], trajectory.rotations[first:],
                               trajectory.gripper_command[first:], position, quaternion_xyzw, elapsed, stamp_ns)

    def _plan_from_images(self, rgb: dict, position, quaternion_xyzw, gripper_open: float, latent,
                          stamp_ns: int | None) -> PlanResult:
        """A 2D image policy's plan: each camera's pixels (the colours of its organised cloud), the pose."""
        from openhelix_training import Observation

        if not isinstance(rgb, dict):
            raise ValueError("an image policy plans from each camera's pixels: rgb by camera name")
        images = []
        for name in self.camera_names:
            if name not in rgb:
                raise ValueError(f"no image of camera {name!r} (have: {', '.join(sorted(rgb)) or 'none'})")
            image = np.asarray(rgb[name])
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"camera {name!r}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            images.append(image)
        latent = self.check_latent(latent)
        proprio = proprio_from_pose(position, quaternion_xyzw, gripper_open)
        start = time.perf_counter()
        trajectory = self.model.predict(Observation(images=images), latent, proprio,
                                        num_inference_steps=self.num_inference_steps, seed=self.seed)
        elapsed = time.perf_counter() - start
        first = 1 if self.drop_first_waypoint and len(trajectory.positions) > 1 else 0
        return self._safe_plan(trajectory.positions[first:], trajectory.rotations[first:],
                               trajectory.gripper_command[first:], position, quaternion_xyzw, elapsed, stamp_ns)

    def _plan_from_cameras(self, xyz: dict, rgb: dict, position, quaternion_xyzw, latent,
                           stamp_ns: int | None = None) -> PlanResult:
        """3D Diffuser Actor's policy call, as the release's CALVIN evaluation makes it: every camera's
        pixels and their world points, the proprioception history, the latent as its instruction tokens;
        the predicted Euler-angle differences added to the current CALVIN angles."""
        import torch

        if not isinstance(xyz, dict) or not isinstance(rgb, dict):
            raise ValueError("a camera policy plans from each camera's organised cloud: xyz and rgb by camera name")
        cameras = []
        for name in self.camera_names:
            if name not in xyz or name not in rgb:
                raise ValueError(f"no organised cloud of camera {name!r} (have: {', '.join(sorted(xyz)) or 'none'})")
            points = np.asarray(xyz[name], dtype=np.float32)
            if points.ndim != 3 or points.shape[2] != 3:
                raise ValueError(f"camera {name!r}: organised cloud must be (H, W, 3), got {points.shape}")
            missing = ~np.all(np.isfinite(points), axis=-1)
            if missing.all():
                raise ValueError(f"camera {name!r}: no pixel has a finite point")
            if missing.any():
                # 3D Diffuser Actor has a point for every pixel; a pixel without depth takes the valid point
                # farthest from the camera's cloud centre, which puts it with the background
                far = points[~missing][np.argmax(np.linalg.norm(points[~missing] - points[~missing].mean(0), axis=1))]
                points = np.where(missing[..., None], far, points)
            cameras.append((np.asarray(rgb[name], dtype=np.uint8), points))
        latent = self.check_latent(latent)
        proprio_from_pose(position, quaternion_xyzw, 1.0)  # checks the pose
        quaternion = np.asarray(quaternion_xyzw, dtype=np.float64)
        euler = Rotation.from_quat(quaternion / np.linalg.norm(quaternion)).as_euler("xyz")
        if self._history_reset:
            self._history_reset = False
            self._history.clear()
        self._history.append((np.asarray(position, dtype=np.float64), euler))
        frames = list(self._history)
        frames = [frames[0]] * (self._history.maxlen - len(frames)) + frames
        start = time.perf_counter()
        generator = torch.Generator(device=self.model.location_bounds.device).manual_seed(self.seed)
        prediction = self.model.predict_calvin(cameras, frames, latent.tokens.reshape(-1), generator=generator)
        elapsed = time.perf_counter() - start
        if not (np.all(np.isfinite(prediction["positions"])) and np.all(np.isfinite(prediction["euler"]))):
            raise ValueError("System 1 predicted a trajectory with NaN or infinite values; not published")
        rotations = Rotation.from_euler("xyz", prediction["euler"]).as_matrix()
        return self._safe_plan(prediction["positions"], rotations, prediction["gripper"], position, quaternion_xyzw,
                               elapsed, stamp_ns)

    def _safe_plan(self, positions, rotations, gripper, position, quaternion_xyzw, elapsed: float,
                   stamp_ns: int | None = None) -> PlanResult:
        """A predicted trajectory (world positions, rotation matrices, +-1 gripper), ensembled with the
        previous plans when an ensemble is on, through the safety filter."""
        positions = np.asarray(positions, dtype=np.float64)
        rotations = np.asarray(rotations, dtype=np.float64)
        gripper = np.asarray(gripper, dtype=np.float64)
        if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(rotations))):
            raise ValueError("System 1 predicted a trajectory with NaN or infinite values; not published")
        quaternions = Rotation.from_matrix(rotations).as_quat()
        if self.ensemble is not None and stamp_ns is not None:
            positions, quaternions, gripper = self.ensemble.apply(stamp_ns, positions, quaternions, gripper)
        start_quaternion = np.asarray(quaternion_xyzw, dtype=np.float64)
        start_quaternion = start_quaternion / np.linalg.norm(start_quaternion)
        safe = self.safety.apply(positions, quaternions, self.waypoint_period,
                                 np.asarray(position, dtype=np.float64), start_quaternion)
        return PlanResult(positions=safe.positions, quaternions=safe.quaternions, gripper=gripper,
                          period=self.waypoint_period, inference_time=elapsed, raw_positions=positions, safety=safe)


# ---------------------------------------------------------------------------------------------------
# Built from the node's parameters (system1/parameters.py), for the node and the in-process graph


def system1_core_from_parameters(p: dict) -> System1Core:
    """The System1Core the system1 node's parameters describe (model or checkpoint, safety filter,
    inference settings), on ``p["device"]``."""
    from openhelix_ros.arm.safety import VelocityLimits, WorkspaceBounds

    safety = SafetyFilter(WorkspaceBounds(tuple(p["workspace_low"]), tuple(p["workspace_high"])),
                          VelocityLimits(p["max_linear_speed"], p["max_angular_speed"]))
    ensemble = (TemporalEnsemble(p["temporal_ensemble_plans"], p["temporal_ensemble_decay"], p["waypoint_period"])
                if p["temporal_ensemble_plans"] > 0 else None)
    core = System1Core.load(p["model"], p["checkpoint"], safety=safety, num_inference_steps=p["num_inference_steps"],
                            waypoint_period=p["waypoint_period"], drop_first_waypoint=p["drop_first_waypoint"],
                            seed=p["seed"], ensemble=ensemble)
    if p["device"] != "cpu":
        core.model.to(p["device"])
    return core


def plan_scheduler_from_parameters(p: dict) -> PlanScheduler:
    """The PlanScheduler (latent rule, replanning, waits) the system1 node's parameters describe."""
    selector = LatentSelector(p["clock_mode"], p["latent_period_steps"], float(p["control_rate"]), p["max_latent_age"])
    replan_period = 1.0 / p["replan_rate"] if p["replan_rate"] > 0 else 0.0
    return PlanScheduler(selector, replan_period, float(p["latent_wait_timeout"]))
