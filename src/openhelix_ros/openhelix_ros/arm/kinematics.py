"""Franka Emika Panda forward and inverse kinematics in numpy. ROS-free.

Geometry and limits are Franka's published ones (FCI documentation, "Robot and interface
specifications"): modified (Craig) Denavit-Hartenberg parameters, the flange 0.107 m past joint 7, the
Franka Hand mounted -45 deg about the flange's z axis, and its tool centre point ``tcp_offset`` further
along z (0.1034 m for the Franka Hand; pybullet_data's ``panda_grasptarget`` uses 0.105 m).

Inverse kinematics is damped least squares on the 6-D pose error, with joint limits enforced by
projection after every step, a null-space pull towards the seed (so the redundant seventh degree of
freedom stays where the arm already is, and consecutive waypoints get continuous solutions), and
deterministic restarts when the warm start does not converge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

JOINT_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))

# Modified DH, one row per joint i: (a_{i-1} [m], d_i [m], alpha_{i-1} [rad]); theta_i is the joint angle.
MDH_PARAMETERS = np.array([
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
])
FLANGE_OFFSET = 0.107  # m, joint 7 frame -> flange, along z
HAND_YAW = -np.pi / 4  # rad, flange -> Franka Hand, about z
FRANKA_HAND_TCP_OFFSET = 0.1034  # m, hand -> tool centre point, along z

# Joint position limits (rad) and velocity limits (rad/s), Franka's specification.
JOINT_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
JOINT_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
JOINT_MAX_VELOCITY = np.array([2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100])

# Franka's documented "ready" pose: elbow up, hand pointing down, well inside every limit.
READY_JOINTS = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])


def _mdh_transform(a: float, d: float, alpha: float, theta: float) -> np.ndarray:
    """RotX(alpha) * TransX(a) * RotZ(theta) * TransZ(d): Craig's link transform."""
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array([
        [ct, -st, 0.0, a],
        [st * ca, ct * ca, -sa, -d * sa],
        [st * sa, ct * sa, ca, d * ca],
        [0.0, 0.0, 0.0, 1.0],
    ])


def pose_matrix(position, quaternion_xyzw) -> np.ndarray:
    """4x4 homogeneous transform from a position and a quaternion (x, y, z, w)."""
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_quat(quaternion_xyzw).as_matrix()
    transform[:3, 3] = position
    return transform


def matrix_to_pose(transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 transform -> (position, quaternion (x, y, z, w) with w >= 0)."""
    quaternion = Rotation.from_matrix(transform[:3, :3]).as_quat()
    return transform[:3, 3].copy(), quaternion if quaternion[3] >= 0 else -quaternion


def _jacobian(frames: list[np.ndarray]) -> np.ndarray:
    tcp = frames[-1][:3, 3]
    axes = np.array([frame[:3, 2] for frame in frames[:7]])
    origins = np.array([frame[:3, 3] for frame in frames[:7]])
    return np.vstack([np.cross(axes, tcp - origins).T, axes.T])


def pose_error(current: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position error, orientation error as a rotation vector), both in the world frame."""
    return (target[:3, 3] - current[:3, 3],
            Rotation.from_matrix(target[:3, :3] @ current[:3, :3].T).as_rotvec())


@dataclass(frozen=True)
class IKSettings:
    """Tuning of the damped-least-squares solver; the defaults reach 0.1 mm / 0.06 deg."""

    # Few iterations per attempt and many restarts: an attempt that has not converged by then is
    # almost always stuck against a joint limit, and a fresh start is cheaper than waiting it out.
    max_iterations: int = 60
    damping: float = 0.02  # lambda: trades accuracy near singularities for bounded steps
    position_tolerance: float = 1e-4  # m
    orientation_tolerance: float = 1e-3  # rad
    max_step: float = 0.3  # rad per iteration, per joint
    nullspace_gain: float = 0.05  # pull towards the seed in the Jacobian's null space
    restarts: int = 20  # extra attempts from deterministic random seeds when the warm start fails
    restart_seed: int = 0


@dataclass(frozen=True)
class IKResult:
    """A solution (or the best attempt) and how far its pose is from the target."""

    joints: np.ndarray
    success: bool
    position_error: float  # m
    orientation_error: float  # rad
    iterations: int  # over all attempts

    def describe(self) -> str:
        return (f"{'converged' if self.success else 'did not converge'}: position error "
                f"{self.position_error * 1e3:.2f} mm, orientation error "
                f"{np.degrees(self.orientation_error):.2f} deg after {self.iterations} iterations")


@dataclass(frozen=True)
class PandaKinematics:
    """Panda kinematics with the robot base placed in the world by ``base`` (4x4, world <- panda_link0)."""

    tcp_offset: float = FRANKA_HAND_TCP_OFFSET
    base: np.ndarray = field(default_factory=lambda: np.eye(4))
    lower: np.ndarray = field(default_factory=lambda: JOINT_LOWER.copy())
    upper: np.ndarray = field(default_factory=lambda: JOINT_UPPER.copy())

    def _check_joints(self, joints) -> np.ndarray:
        joints = np.asarray(joints, dtype=np.float64)
        if joints.shape != (7,) or not np.all(np.isfinite(joints)):
            raise ValueError(f"the Panda has 7 joints; got {np.asarray(joints).tolist()}")
        return joints

    def joint_frames(self, joints) -> list[np.ndarray]:
        """World transforms of joint frames 1..7 (z = joint axis), then the TCP."""
        joints = self._check_joints(joints)
        transform = self.base.copy()
        frames = []
        for (a, d, alpha), theta in zip(MDH_PARAMETERS, joints, strict=True):
            transform = transform @ _mdh_transform(a, d, alpha, theta)
            frames.append(transform)
        tool = np.eye(4)
        tool[:3, :3] = Rotation.from_rotvec([0.0, 0.0, HAND_YAW]).as_matrix()
        tool[2, 3] = FLANGE_OFFSET + self.tcp_offset  # both offsets lie along the same z axis
        frames.append(transform @ tool)
        return frames

    def forward(self, joints) -> np.ndarray:
        """4x4 world pose of the tool centre point."""
        return self.joint_frames(joints)[-1]

    def jacobian(self, joints) -> np.ndarray:
        """6x7 geometric Jacobian of the TCP (rows: linear, then angular velocity; world frame)."""
        return _jacobian(self.joint_frames(joints))


    def within_limits(self, joints, margin: float = 0.0) -> bool:
        joints = np.asarray(joints)
        return bool(np.all(joints >= self.lower + margin) and np.all(joints <= self.upper - margin))

    def inverse(self, target: np.ndarray, seed, settings: IKSettings = IKSettings()) -> IKResult:
        """Joint angles putting the TCP at ``target`` (4x4 world pose), starting from ``seed``.

        Tries the seed first (warm start: the current joint state, or the previous waypoint's
        solution), then ``settings.restarts`` deterministic random configurations. Returns the best
        attempt with ``success`` False when none is within tolerance (an unreachable pose).
        """
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (4, 4) or not np.all(np.isfinite(target)):
            raise ValueError("IK target must be a finite 4x4 transform")
        seed = np.clip(self._check_joints(seed), self.lower, self.upper)
        rng = np.random.default_rng(settings.restart_seed)
        best: IKResult | None = None
        iterations = 0
        for attempt in range(settings.restarts + 1):
            start = seed if attempt == 0 else rng.uniform(self.lower, self.upper)
            joints, used, p_err, o_err = self._solve(target, start, seed, settings)
            iterations += used
            success = p_err <= settings.position_tolerance and o_err <= settings.orientation_tolerance
            result = IKResult(joints, success, p_err, o_err, iterations)
            if best is None or p_err + 0.1 * o_err < best.position_error + 0.1 * best.orientation_error:
                best = result
            if success:
                return IKResult(joints, True, p_err, o_err, iterations)
        # No attempt converged within its budget; the best one is often just creeping along a joint
        # limit, so give it a longer final run before declaring the pose unreachable.
        joints, used, p_err, o_err = self._solve(target, best.joints, seed, settings, 4 * settings.max_iterations)
        iterations += used
        if p_err + 0.1 * o_err >= best.position_error + 0.1 * best.orientation_error:
            return IKResult(best.joints, False, best.position_error, best.orientation_error, iterations)
        success = p_err <= settings.position_tolerance and o_err <= settings.orientation_tolerance
        return IKResult(joints, success, p_err, o_err, iterations)

    def _solve(self, target: np.ndarray, start: np.ndarray, rest: np.ndarray, settings: IKSettings,
               max_iterations: int | None = None) -> tuple[np.ndarray, int, float, float]:
        max_iterations = max_iterations or settings.max_iterations
        joints = start.copy()
        damping2 = settings.damping ** 2
        identity6, identity7 = np.eye(6), np.eye(7)
        p_err = o_err = np.inf
        for iteration in range(1, max_iterations + 1):
            frames = self.joint_frames(joints)
            position_error, rotation_error = pose_error(frames[-1], target)
            p_err, o_err = float(np.linalg.norm(position_error)), float(np.linalg.norm(rotation_error))
            if p_err <= settings.position_tolerance and o_err <= settings.orientation_tolerance:
                return joints, iteration, p_err, o_err
            jac = _jacobian(frames)
            error = np.concatenate([position_error, rotation_error])
            # Damping shrinks as the error does, so the last steps are (nearly) Gauss-Newton steps.
            regularised = jac @ jac.T + damping2 * min(1.0, p_err + o_err) * identity6
            step = jac.T @ np.linalg.solve(regularised, error)
            projector = identity7 - jac.T @ np.linalg.solve(regularised, jac)
            step += projector @ (settings.nullspace_gain * (rest - joints))
            largest = np.max(np.abs(step))
            if largest > settings.max_step:
                step *= settings.max_step / largest
            joints = np.clip(joints + step, self.lower, self.upper)
        frames = self.joint_frames(joints)
        position_error, rotation_error = pose_error(frames[-1], target)
        return (joints, max_iterations, float(np.linalg.norm(position_error)),
                float(np.linalg.norm(rotation_error)))


def trajectory_times(waypoints: np.ndarray, start: np.ndarray, period: float,
                     max_velocity: np.ndarray = JOINT_MAX_VELOCITY) -> np.ndarray:
    """time_from_start (s) of each joint waypoint: one ``period`` apart, stretched where a joint would
    otherwise exceed its velocity limit (the controller then moves slower, never faster, than asked)."""
    if not period > 0:
        raise ValueError(f"waypoint period must be > 0 s, got {period}")
    previous = np.asarray(start, dtype=np.float64)
    times = np.empty(len(waypoints))
    elapsed = 0.0
    for i, joints in enumerate(np.asarray(waypoints, dtype=np.float64)):
        needed = float(np.max(np.abs(joints - previous) / max_velocity))
        elapsed += max(period, needed)
        times[i] = elapsed
        previous = joints
    return times


class UnreachableError(ValueError):
    """A trajectory the arm cannot follow: a pose out of reach, or a jump between IK branches."""


# Along a trajectory every waypoint is close to the previous solution, so the warm start converges in
# a few iterations when the pose is reachable; random restarts would only find other branches (which
# the joint-jump check refuses anyway) and cost a second or more of CPU on an unreachable pose.
TRAJECTORY_IK = IKSettings(restarts=0)


def solve_trajectory(kinematics: PandaKinematics, positions: np.ndarray, quaternions: np.ndarray,
                     seed: np.ndarray, settings: IKSettings = TRAJECTORY_IK,
                     max_joint_jump: float = 0.5) -> np.ndarray:
    """Joint angles (N, 7) for N world poses, each IK warm-started from the previous solution
    (the first from ``seed``, the current joint state), so consecutive solutions stay on one branch.

    Raises UnreachableError naming the first waypoint that has no solution within tolerance, or
    whose solution is more than ``max_joint_jump`` rad from the previous one in some joint (an elbow
    or wrist flip, which a joint controller would execute as a sweeping motion).
    """
    previous = np.asarray(seed, dtype=np.float64)
    solutions = np.empty((len(positions), 7))
    for i, (position, quaternion) in enumerate(zip(positions, quaternions, strict=True)):
        result = kinematics.inverse(pose_matrix(position, quaternion), previous, settings)
        if not result.success:
            raise UnreachableError(f"waypoint {i} of {len(positions)} at {np.round(position, 3).tolist()} is "
                                   f"unreachable: IK {result.describe()}")
        jump = np.abs(result.joints - previous)
        if jump.max() > max_joint_jump:
            joint = int(np.argmax(jump))
            raise UnreachableError(f"waypoint {i} of {len(positions)} needs {JOINT_NAMES[joint]} to jump "
                                   f"{jump[joint]:.2f} rad (limit {max_joint_jump:.2f}): no continuous IK solution")
        solutions[i] = previous = result.joints
    return solutions
