"""arm_interface without ROS: a world-frame trajectory and the current joints in, what the controllers
get out (joint positions and times, base-frame target poses, gripper commands), and which waypoint is
due at a given time. The node (arm/node.py) converts messages, guards its state with a lock and
publishes; the tests drive this directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openhelix_ros.arm.kinematics import (
    PandaKinematics,
    UnreachableError,
    matrix_to_pose,
    pose_matrix,
    solve_trajectory,
    trajectory_times,
)
from openhelix_ros.arm.safety import SafetyFilter
from openhelix_ros.common.conversions import TrajectoryArrays


@dataclass
class ArmPlan:
    """One accepted trajectory, ready for the controllers."""

    joints: np.ndarray  # (N, 7) panda_joint1..7
    times: np.ndarray  # (N,) time_from_start of each waypoint, s
    base_poses: list  # (position, quaternion x, y, z, w) in the base frame, per waypoint
    gripper: np.ndarray  # (N,) +1 open / -1 close
    safety: object  # the SafetyFilter's result: what it clipped or slowed (``modified``, ``summary()``)

    def due(self, elapsed: float) -> int:
        """The waypoint due ``elapsed`` s after the plan started: the first whose time has not passed
        yet, else the last (held)."""
        return min(int(np.searchsorted(self.times, elapsed, side="left")), len(self.times) - 1)


class ArmPlanner:
    """Inverse kinematics and limits for one Panda whose base sits at ``base`` in the world frame."""

    def __init__(self, kinematics: PandaKinematics, safety: SafetyFilter, world_frame: str = "world",
                 joint_state_timeout: float = 0.5, max_joint_jump: float = 0.5) -> None:
        self.kinematics = kinematics
        self.safety = safety
        self.world_frame = world_frame
        self.joint_state_timeout = float(joint_state_timeout)
        self.max_joint_jump = float(max_joint_jump)
        self._world_to_base = np.linalg.inv(kinematics.base)

    def plan(self, trajectory: TrajectoryArrays, joints: np.ndarray | None, joints_age: float) -> ArmPlan:
        """ValueError naming why a trajectory cannot be executed (frame, no or stale joint states, out of
        reach, a joint flip); else the plan: clipped to the box, slowed to the limits, solved from
        ``joints`` (the newest joint states, ``joints_age`` s old)."""
        if trajectory.frame_id != self.world_frame:
            raise ValueError(f"poses are in frame {trajectory.frame_id!r}, expected {self.world_frame!r}")
        if joints is None:
            raise ValueError("no joint_states received yet: IK needs the current joints")
        if joints_age > self.joint_state_timeout:
            raise ValueError(f"newest joint_states is {joints_age:.2f} s old (limit {self.joint_state_timeout:.2f} s)")
        start_position, start_quaternion = matrix_to_pose(self.kinematics.forward(joints))
        safety = self.safety.apply(trajectory.positions, trajectory.quaternions, trajectory.period,
                                   start_position, start_quaternion)
        try:
            solution = solve_trajectory(self.kinematics, safety.positions, safety.quaternions, joints,
                                        max_joint_jump=self.max_joint_jump)
        except UnreachableError as error:
            raise ValueError(str(error)) from None
        times = trajectory_times(solution, joints, trajectory.period)
        # CALVIN's convention: > 0 opens, anything else closes.
        gripper = np.where(trajectory.gripper > 0, 1.0, -1.0)
        poses = [self.to_base(p, q) for p, q in zip(safety.positions, safety.quaternions, strict=True)]
        return ArmPlan(solution, times, poses, gripper, safety)

    def to_base(self, position: np.ndarray, quaternion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A world-frame pose in the arm's base frame (what Cartesian controllers take)."""
        return matrix_to_pose(self._world_to_base @ pose_matrix(position, quaternion))

    def base_pose_of(self, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The TCP pose at ``joints``, in the base frame (the hold's target pose)."""
        return matrix_to_pose(np.linalg.inv(self.kinematics.base) @ self.kinematics.forward(joints))
