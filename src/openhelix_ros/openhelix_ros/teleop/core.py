"""Tele-operation without ROS: velocity commands in, end-effector trajectories out.

A human (a keyboard, a SpaceMouse, a gamepad) commands a twist: linear (m/s) and angular (rad/s)
velocity of the tool centre point. :class:`TeleopCore` integrates it into a target pose one control
period at a time, starting from where the arm is, and turns the target into the trajectory the bridge
executes (absolute world-frame waypoints, as every policy of the graph publishes). The same
observations and the same trajectories as a learned policy's, so a tele-operated demonstration records
exactly what training reads.

Safety, in the order applied:

- a command older than ``command_timeout`` counts as zero (a dead man's switch: a dropped device or a
  lost message stops the arm rather than leaving it moving);
- a command above the speed limits is scaled down as a whole (the direction is kept);
- the target stays inside the workspace box, and at most ``max_lead`` metres ahead of the measured
  tool centre point, so an arm blocked by the table does not build up a target that jumps away when
  it is free.

:class:`KeyboardTeleop` maps terminal keys to such commands (see :data:`KEY_BINDINGS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from openhelix_ros.arm.safety import WorkspaceBounds
from openhelix_ros.bridge.core import ROBOT_OBS_SIZE, check_obs_vector, euler_to_quaternion

TWIST_FRAMES = ("world", "tool")


@dataclass(frozen=True)
class TeleopConfig:
    """How commands become motion; the teleop node's parameters of the same names."""

    control_rate: float = 30.0  # Hz: one integration step per control period (= one env step)
    max_linear_speed: float = 0.25  # m/s: a larger commanded speed is scaled down to this
    max_angular_speed: float = 1.0  # rad/s
    command_timeout: float = 0.5  # s: a command older than this counts as "stop"
    twist_frame: str = "world"  # "world": axes of the world frame; "tool": axes of the gripper
    horizon: int = 1  # waypoints per trajectory: 1 in lockstep; a few for a realtime bridge
    max_lead: float = 0.05  # m the target may run ahead of the measured tool centre point

    def __post_init__(self) -> None:
        for name in ("control_rate", "max_linear_speed", "max_angular_speed", "command_timeout", "max_lead"):
            value = getattr(self, name)
            if not value > 0:  # also catches NaN
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.twist_frame not in TWIST_FRAMES:
            raise ValueError(f"twist_frame must be one of {TWIST_FRAMES}, got {self.twist_frame!r}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 waypoint, got {self.horizon}")

    @property
    def period(self) -> float:
        return 1.0 / self.control_rate


@dataclass
class TeleopPlan:
    """The trajectory for one observation: ``horizon`` waypoints along the commanded twist."""

    positions: np.ndarray  # (H, 3) world frame, m
    quaternions: np.ndarray  # (H, 4) x, y, z, w
    gripper: np.ndarray  # (H,) +1 open, -1 closed
    period: float
    stamp_ns: int  # the observation it continues from


def check_twist(linear: Sequence[float], angular: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Two 3-vectors of finite numbers, as float arrays; ValueError naming what is wrong otherwise."""
    arrays = []
    for name, values in (("linear", linear), ("angular", angular)):
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (3,):
            raise ValueError(f"twist {name} must have 3 components, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"twist {name} contains NaN or infinite values: {array.tolist()}")
        arrays.append(array)
    return arrays[0], arrays[1]


def _limit_norm(vector: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    norm = float(np.linalg.norm(vector))
    return (vector * (limit / norm), True) if norm > limit else (vector, False)


class TeleopCore:
    """Integrates twist commands into target poses (see the module docstring)."""

    def __init__(self, config: TeleopConfig | None = None, bounds: WorkspaceBounds | None = None):
        self.config = config or TeleopConfig()
        self.bounds = bounds or WorkspaceBounds()
        self._linear = np.zeros(3)
        self._angular = np.zeros(3)
        self._command_time: float | None = None
        self.gripper = 1.0  # +1 open, -1 closed; taken from the robot at the first observation and resets
        self._target_position: np.ndarray | None = None
        self._target_rotation: Rotation | None = None
        self._tcp: np.ndarray | None = None  # the measured tool centre point of the newest observation
        self._step: int | None = None
        self._stamp_ns: int | None = None

    # ------------------------------------------------------------------------------ inputs
    def command(self, linear: Sequence[float], angular: Sequence[float], now: float) -> bool:
        """Take a twist command at time ``now`` (s, any clock the caller keeps using). Returns True
        when it was scaled down to the speed limits. Raises ValueError (and stops the arm) for a bad one."""
        try:
            linear, angular = check_twist(linear, angular)
        except ValueError:
            self.stop()
            raise
        linear, scaled_linear = _limit_norm(linear, self.config.max_linear_speed)
        angular, scaled_angular = _limit_norm(angular, self.config.max_angular_speed)
        self._linear, self._angular, self._command_time = linear, angular, float(now)
        return scaled_linear or scaled_angular

    def stop(self) -> None:
        """Zero velocity at once (the target stays where it is)."""
        self._linear, self._angular, self._command_time = np.zeros(3), np.zeros(3), None

    def set_gripper(self, closed: bool) -> None:
        self.gripper = -1.0 if closed else 1.0

    def toggle_gripper(self) -> bool:
        """Open a closed gripper or close an open one; returns True when it is now closed."""
        self.gripper = -self.gripper
        return self.gripper < 0

    def observe(self, robot_obs: Sequence[float], step: int, stamp_ns: int) -> bool:
        """Take an observation (CALVIN's robot_obs, its env step and stamp). Returns True when it starts
        a new episode (the first one, or a reset: the step counter went back), which re-anchors the
        target at the measured pose and takes the gripper state from the robot."""
        robot = check_obs_vector(robot_obs, ROBOT_OBS_SIZE, "robot_obs")
        if robot is None:
            raise ValueError("robot_obs is empty")
        # Sim time and steps restart at every reset, so a reset right after a reset repeats the step: a
        # repeated step is the same observation re-sent only if the arm is where it was.
        reset = self._step is None or step < self._step or (
            step == self._step and self._tcp is not None and float(np.abs(robot[:3] - self._tcp).max()) > 1e-6)
        self._tcp = robot[:3].copy()
        self._step, self._stamp_ns = int(step), int(stamp_ns)
        if reset or self._target_position is None:
            self._target_position = robot[:3].copy()
            self._target_rotation = Rotation.from_quat(euler_to_quaternion(robot[3:6]))
            self.gripper = 1.0 if robot[14] > 0 else -1.0
            self.stop()
        return reset

    @property
    def anchored(self) -> bool:
        """An observation has been seen, so there is a pose to move from."""
        return self._target_position is not None

    def velocity(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """The twist in force at ``now``: the last command, or zero once it is older than the timeout."""
        if self._command_time is None or now - self._command_time > self.config.command_timeout:
            return np.zeros(3), np.zeros(3)
        return self._linear, self._angular

    # ------------------------------------------------------------------------------ output
    def plan(self, now: float) -> TeleopPlan | None:
        """Advance the target by one control period along the twist in force and return the trajectory
        from it (None before the first observation)."""
        if self._target_position is None or self._target_rotation is None or self._tcp is None:
            return None
        linear, angular = self.velocity(now)
        period = self.config.period
        self._target_position, self._target_rotation = self._advance(self._target_position,
                                                                     self._target_rotation, linear, angular)
        positions, rotations = [], []
        position, rotation = self._target_position, self._target_rotation
        for _ in range(self.config.horizon):
            positions.append(position)
            rotations.append(rotation.as_quat())
            position, rotation = self._advance(position, rotation, linear, angular)
        horizon = self.config.horizon
        return TeleopPlan(positions=np.array(positions), quaternions=np.array(rotations),
                          gripper=np.full(horizon, self.gripper), period=period,
                          stamp_ns=int(self._stamp_ns or 0))

    def _advance(self, position: np.ndarray, rotation: Rotation, linear: np.ndarray,
                 angular: np.ndarray) -> tuple[np.ndarray, Rotation]:
        period = self.config.period
        step = Rotation.from_rotvec(angular * period)
        if self.config.twist_frame == "tool":
            position = position + rotation.apply(linear * period)
            rotation = rotation * step
        else:
            position = position + linear * period
            rotation = step * rotation
        position = self.bounds.clip(position)
        lead = position - self._tcp
        distance = float(np.linalg.norm(lead))
        if distance > self.config.max_lead:
            position = self._tcp + lead * (self.config.max_lead / distance)
        return position, rotation


# ---------------------------------------------------------------------------------------------------
# Keyboard

# key -> (linear direction, angular direction), unit axes of the twist frame. The play table's robot
# stands at y = -0.52 facing +y, so "forward" is +y, "right" is +x.
KEY_BINDINGS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "w": ((0.0, 1.0, 0.0), (0.0, 0.0, 0.0)),  # forward
    "s": ((0.0, -1.0, 0.0), (0.0, 0.0, 0.0)),  # back
    "a": ((-1.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # left
    "d": ((1.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # right
    "r": ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0)),  # up
    "f": ((0.0, 0.0, -1.0), (0.0, 0.0, 0.0)),  # down
    "u": ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),  # roll +
    "o": ((0.0, 0.0, 0.0), (-1.0, 0.0, 0.0)),  # roll -
    "i": ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # pitch +
    "k": ((0.0, 0.0, 0.0), (0.0, -1.0, 0.0)),  # pitch -
    "j": ((0.0, 0.0, 0.0), (0.0, 0.0, 1.0)),  # yaw +
    "l": ((0.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # yaw -
}
GRIPPER_KEY = " "  # toggles the gripper
END_EPISODE_KEYS = ("\r", "\n")  # give up on this episode (recorded as failed)
QUIT_KEYS = ("q", "\x1b", "\x03")  # q, Esc, Ctrl-C: stop collecting
KEYBOARD_HELP = ("w/s forward/back, a/d left/right, r/f up/down, u/o roll, i/k pitch, j/l yaw, "
                 "space gripper, Enter give up on this episode, q quit")


@dataclass
class KeyEvent:
    """What one key press asks for; ``twist`` is (linear, angular) in m/s and rad/s, or None."""

    twist: tuple[np.ndarray, np.ndarray] | None = None
    toggle_gripper: bool = False
    end_episode: bool = False
    quit: bool = False


class KeyboardTeleop:
    """Terminal keys -> twist commands. A motion key moves at ``linear_speed``/``angular_speed`` along
    its axis; a terminal sends a held key again and again (auto-repeat), so holding it keeps moving and
    releasing it stops once the node's command_timeout has passed. Keys are case-insensitive."""

    def __init__(self, linear_speed: float = 0.1, angular_speed: float = 0.5):
        if not (linear_speed > 0 and angular_speed > 0):
            raise ValueError(f"keyboard speeds must be > 0, got {linear_speed} m/s, {angular_speed} rad/s")
        self.linear_speed, self.angular_speed = linear_speed, angular_speed

    def press(self, key: str) -> KeyEvent | None:
        """The event for one key (None for a key with no meaning)."""
        if key in QUIT_KEYS:
            return KeyEvent(quit=True)
        if key in END_EPISODE_KEYS:
            return KeyEvent(end_episode=True)
        if key == GRIPPER_KEY:
            return KeyEvent(toggle_gripper=True)
        binding = KEY_BINDINGS.get(key.lower())
        if binding is None:
            return None
        linear, angular = (np.asarray(v, dtype=np.float64) for v in binding)
        return KeyEvent(twist=(linear * self.linear_speed, angular * self.angular_speed))
