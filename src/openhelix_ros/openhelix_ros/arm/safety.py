"""Safety rules applied before a trajectory reaches an arm. ROS-free: arrays in, arrays out.

- :class:`WorkspaceBounds`: an axis-aligned box the tool centre point must stay in.
- :class:`VelocityLimits`: the largest translational (m/s) and rotational (rad/s) speed between
  consecutive waypoints, given the waypoint period.
- :class:`SafetyFilter`: both, in the order that keeps both guarantees (see :meth:`SafetyFilter.apply`).
- :class:`LatentAgeGate`: whether a goal latent is fresh enough for System 1 to move the arm.

Quaternions are (x, y, z, w), as everywhere in this project (see common/conversions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class WorkspaceBounds:
    """An axis-aligned box in the world frame, metres.

    The default is the embedded simulator's reachable table-top box (the same numbers as
    ``sim.config``'s workspace, world frame, robot base at (0, -0.52, 0)); a real cell sets its own.
    """

    low: tuple[float, float, float] = (-0.60, -0.60, -0.16)
    high: tuple[float, float, float] = (0.60, 0.36, 0.65)

    def __post_init__(self) -> None:
        low, high = np.asarray(self.low, dtype=float), np.asarray(self.high, dtype=float)
        if low.shape != (3,) or high.shape != (3,):
            raise ValueError(f"workspace bounds need 3 values each, got low={self.low} high={self.high}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"workspace bounds must be finite, got low={self.low} high={self.high}")
        if np.any(low >= high):
            raise ValueError(f"workspace bounds: every low must be below its high, got low={self.low} "
                             f"high={self.high}")

    def contains(self, positions: np.ndarray) -> np.ndarray:
        """Boolean mask of the (N, 3) positions inside the box (boundary included)."""
        positions = np.atleast_2d(positions)
        return np.all((positions >= self.low) & (positions <= self.high), axis=1)

    def clip(self, positions: np.ndarray) -> np.ndarray:
        """Each position moved to the nearest point of the box (a projection: never lengthens a step)."""
        return np.clip(np.asarray(positions, dtype=np.float64), self.low, self.high)


@dataclass(frozen=True)
class VelocityLimits:
    """Largest speed of the tool centre point between consecutive waypoints.

    Defaults are well under the Franka Panda's Cartesian limits (1.7 m/s, 2.5 rad/s) and above what
    CALVIN's relative actions command (0.02 m and 0.05 rad per 1/30 s step: 0.6 m/s, 1.5 rad/s).
    """

    max_linear_speed: float = 1.0  # m/s
    max_angular_speed: float = 2.0  # rad/s

    def __post_init__(self) -> None:
        for name in ("max_linear_speed", "max_angular_speed"):
            value = getattr(self, name)
            if not value > 0:  # also catches NaN
                raise ValueError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True)
class SafetyResult:
    """A trajectory after the safety filter, and what the filter changed."""

    positions: np.ndarray  # (N, 3)
    quaternions: np.ndarray  # (N, 4) x, y, z, w
    clipped_waypoints: int  # waypoints that were outside the workspace box
    slowed_translations: int  # steps whose translation was scaled down
    slowed_rotations: int  # steps whose rotation was scaled down
    start_outside: bool  # the current pose itself was outside the box

    @property
    def modified(self) -> bool:
        return bool(self.clipped_waypoints or self.slowed_translations or self.slowed_rotations)

    def summary(self) -> str:
        """One line for a log, naming every change."""
        parts = []
        if self.clipped_waypoints:
            parts.append(f"{self.clipped_waypoints} waypoint(s) clipped to the workspace")
        if self.slowed_translations:
            parts.append(f"{self.slowed_translations} step(s) slowed to the linear speed limit")
        if self.slowed_rotations:
            parts.append(f"{self.slowed_rotations} step(s) slowed to the angular speed limit")
        if self.start_outside:
            parts.append("current pose is outside the workspace")
        return "; ".join(parts) if parts else "unchanged"


def limit_velocity(positions: np.ndarray, quaternions: np.ndarray, period: float, limits: VelocityLimits,
                   start_position: np.ndarray | None = None, start_quaternion: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Scale each step down, keeping its direction, so no step exceeds the speed limits.

    A step goes from the previous *limited* waypoint towards the *requested* one (waypoint 0 starts from
    ``start_position``/``start_quaternion`` when given, else it is kept), so a trajectory that was too
    fast lags behind and then catches up with the requested path rather than drifting off it. Rotation
    steps are scaled along the geodesic (the relative rotation's axis is kept, its angle shortened).
    Returns (positions, quaternions, translation steps scaled, rotation steps scaled).
    """
    if not period > 0:
        raise ValueError(f"waypoint period must be > 0 s, got {period}")
    positions = np.array(positions, dtype=np.float64)
    rotations = Rotation.from_quat(np.asarray(quaternions, dtype=np.float64))
    max_step = limits.max_linear_speed * period
    max_angle = limits.max_angular_speed * period
    # A relative tolerance, so a step exactly at the limit (up to rounding) is not counted as slowed.
    tol = 1e-9
    out_positions = np.empty_like(positions)
    out_rotations: list[Rotation] = []
    slowed_t = slowed_r = 0
    previous_p = None if start_position is None else np.asarray(start_position, dtype=np.float64)
    previous_r = None if start_quaternion is None else Rotation.from_quat(start_quaternion)
    for i in range(len(positions)):
        target_p, target_r = positions[i], rotations[i]
        if previous_p is not None:
            step = target_p - previous_p
            length = float(np.linalg.norm(step))
            if length > max_step * (1 + tol):
                target_p = previous_p + step * (max_step / length)
                slowed_t += 1
        if previous_r is not None:
            relative = (previous_r.inv() * target_r).as_rotvec()
            angle = float(np.linalg.norm(relative))
            if angle > max_angle * (1 + tol):
                target_r = previous_r * Rotation.from_rotvec(relative * (max_angle / angle))
                slowed_r += 1
        out_positions[i] = target_p
        out_rotations.append(target_r)
        previous_p, previous_r = target_p, target_r
    out_quaternions = Rotation.concatenate(out_rotations).as_quat()
    # Keep each quaternion in the hemisphere of the requested one, so consumers see no sign flips.
    flip = np.sum(out_quaternions * np.asarray(quaternions), axis=1) < 0
    out_quaternions[flip] *= -1
    return out_positions, out_quaternions, slowed_t, slowed_r


@dataclass(frozen=True)
class SafetyFilter:
    """Workspace bounds and velocity limits together; :meth:`apply` is what nodes call."""

    bounds: WorkspaceBounds = WorkspaceBounds()
    limits: VelocityLimits = VelocityLimits()

    def apply(self, positions: np.ndarray, quaternions: np.ndarray, period: float,
              start_position: np.ndarray | None = None,
              start_quaternion: np.ndarray | None = None) -> SafetyResult:
        """Clip the waypoints to the box, then limit the speed from the current pose.

        In this order both rules hold: every limited waypoint lies between two points of the box (the
        previous waypoint and a clipped target), so it stays inside the (convex) box. The one exception
        is a current pose already outside the box: the arm then moves towards the box no faster than
        the limits allow (``start_outside`` says so) rather than jumping.
        """
        positions = np.asarray(positions, dtype=np.float64)
        inside = self.bounds.contains(positions)
        clipped = self.bounds.clip(positions)
        start_outside = start_position is not None and not bool(self.bounds.contains(start_position)[0])
        limited_p, limited_q, slowed_t, slowed_r = limit_velocity(
            clipped, quaternions, period, self.limits, start_position, start_quaternion)
        return SafetyResult(positions=limited_p, quaternions=limited_q,
                            clipped_waypoints=int(np.count_nonzero(~inside)),
                            slowed_translations=slowed_t, slowed_rotations=slowed_r,
                            start_outside=start_outside)


@dataclass(frozen=True)
class GateDecision:
    """Whether the arm may move on a latent; ``reason`` says why (for the log), ``age`` in seconds."""

    allowed: bool
    reason: str
    age: float | None = None


class LatentAgeGate:
    """Stops System 1 from moving the arm when its goal latent is older than ``max_latent_age``.

    Age is ``now - latent observation stamp``, both on the node's clock (sim time in lockstep mode).
    A stamp ahead of ``now`` by more than ``future_tolerance`` means two clocks disagree (a sim-time
    latent against a wall-clock System 1, say), which is refused too, since the age is then unknowable.
    ``changed`` tells a node when to log: only transitions, not every check.
    """

    def __init__(self, max_latent_age: float, future_tolerance: float = 0.05) -> None:
        if not max_latent_age > 0:
            raise ValueError(f"max_latent_age must be > 0 s (use inf to disable the gate), got {max_latent_age}")
        if not future_tolerance >= 0:
            raise ValueError(f"future_tolerance must be >= 0 s, got {future_tolerance}")
        self.max_latent_age = float(max_latent_age)
        self.future_tolerance = float(future_tolerance)
        self._last_allowed: bool | None = None
        self.changed = False
        self.last: GateDecision | None = None  # the latest decision (the node's /diagnostics shows it)

    def check(self, latent_stamp_ns: int | None, now_ns: int) -> GateDecision:
        if latent_stamp_ns is None:
            decision = GateDecision(False, "no goal latent received yet")
        else:
            age = (int(now_ns) - int(latent_stamp_ns)) * 1e-9
            if age < -self.future_tolerance:
                decision = GateDecision(False, f"goal latent is stamped {-age:.3f} s in the future: "
                                               f"clocks disagree (sim time vs wall time?)", age)
            elif age > self.max_latent_age:
                decision = GateDecision(False, f"goal latent is {age:.3f} s old, over max_latent_age "
                                               f"{self.max_latent_age:.3f} s", age)
            else:
                decision = GateDecision(True, f"goal latent is {max(age, 0.0):.3f} s old", age)
        self.changed = decision.allowed != self._last_allowed
        self._last_allowed = decision.allowed
        self.last = decision
        return decision
