"""Peer process that plays robot and policy for the arm_interface test.

Publishes joint_states (the ready pose, at 50 Hz), sends a scripted sequence of ee_trajectory and estop
messages, records every joint_trajectory and target_pose it receives per step, and writes them to
--out as JSON. The base pose must match the arm_interface's parameters (given on the command line).

Steps: valid, close_gripper, nan, unreachable, out_of_bounds, estop_on, during_estop, estop_off,
after_estop, bad_joint_states.
"""

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from openhelix_msgs.msg import EETrajectory
from openhelix_ros.arm.kinematics import (
    JOINT_NAMES,
    READY_JOINTS,
    PandaKinematics,
    matrix_to_pose,
    pose_matrix,
)
from openhelix_ros.common.conversions import duration_to_seconds, joint_state_to_msg, trajectory_to_msg

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
# The estop is a latched state: reliable and transient local, what arm_interface subscribes.
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


VALID_OFFSETS = np.outer(np.arange(1, 11), [0.01, 0.0, 0.0])  # 1 cm per 0.1 s along world x


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--base-position", type=float, nargs=3, required=True)
    parser.add_argument("--base-orientation", type=float, nargs=4, required=True)
    parser.add_argument("--tcp-offset", type=float, required=True)
    return parser.parse_args()


class ArmDriver:
    """The arm_interface's robot (joint_states at 50 Hz) and policy (ee_trajectory, estop); what comes
    back is recorded under the current step's name."""

    def __init__(self, args: argparse.Namespace):
        kinematics = PandaKinematics(tcp_offset=args.tcp_offset, base=pose_matrix(args.base_position,
                                                                                  args.base_orientation))
        self.start_position, self.start_quaternion = matrix_to_pose(kinematics.forward(READY_JOINTS))
        self.node = rclpy.create_node("arm_driver")
        self.joint_states = self.node.create_publisher(JointState, "joint_states", RELIABLE)
        self.trajectories = self.node.create_publisher(EETrajectory, "ee_trajectory", RELIABLE)
        self.estop = self.node.create_publisher(Bool, "estop", LATCHED)
        self.received = {"joint_trajectory": [], "target_pose": [], "gripper_command": []}
        self.step = "startup"
        self.bad_joints = False  # publish NaN for panda_joint4
        self.node.create_subscription(JointTrajectory, "joint_trajectory", self.on_joint_trajectory, RELIABLE)
        self.node.create_subscription(PoseStamped, "target_pose", self.on_target_pose, RELIABLE)
        self.node.create_subscription(Float64MultiArray, "gripper_command", self.on_gripper_command, RELIABLE)
        self.node.create_timer(0.02, self.publish_joints)

    # ------------------------------------------------------------------------------------- recording
    def on_joint_trajectory(self, message: JointTrajectory) -> None:
        self.received["joint_trajectory"].append({
            "step": self.step, "names": list(message.joint_names),
            "positions": [list(point.positions) for point in message.points],
            "times": [duration_to_seconds(point.time_from_start) for point in message.points]})

    def on_target_pose(self, message: PoseStamped) -> None:
        p, o = message.pose.position, message.pose.orientation
        self.received["target_pose"].append({"step": self.step, "frame": message.header.frame_id,
                                             "position": [p.x, p.y, p.z], "quaternion": [o.x, o.y, o.z, o.w]})

    def on_gripper_command(self, message: Float64MultiArray) -> None:
        self.received["gripper_command"].append({"step": self.step, "data": list(message.data)})

    def count(self, name: str, points: int | None = None) -> int:
        """How many joint_trajectory messages came during step ``name`` (with ``points`` points)."""
        return sum(1 for m in self.received["joint_trajectory"]
                   if m["step"] == name and (points is None or len(m["positions"]) == points))

    # -------------------------------------------------------------------------------------- spinning
    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.01)

    def spin_until(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.01)
        return False

    def wait_for_arm_interface(self) -> bool:
        """True once the node subscribes to all three inputs and publishes joint_trajectory and target_pose."""
        return self.spin_until(
            lambda: all(p.get_subscription_count() > 0 for p in (self.joint_states, self.trajectories, self.estop))
            and self.node.count_publishers("joint_trajectory") > 0 and self.node.count_publishers("target_pose") > 0,
            30)

    # ------------------------------------------------------------------------------------ publishing
    def publish_joints(self) -> None:
        positions = READY_JOINTS.copy()
        if self.bad_joints:
            positions[3] = np.nan
        self.joint_states.publish(joint_state_to_msg(list(JOINT_NAMES) + ["panda_finger_joint1"],
                                                     [*positions, 0.04], stamp=self.node.get_clock().now().nanoseconds))

    def line(self, offsets, period=0.1, sequence=1, gripper=1.0) -> EETrajectory:
        """A trajectory through the start position plus ``offsets``, in the start orientation."""
        positions = self.start_position + np.asarray(offsets, dtype=float)
        return trajectory_to_msg(positions, np.tile(self.start_quaternion, (len(positions), 1)),
                                 np.broadcast_to(np.asarray(gripper, dtype=float), len(positions)), period,
                                 sequence=sequence)

    def far(self) -> np.ndarray:
        return np.array([0.6, 0.36, 0.6]) - self.start_position  # inside the box, 1.1 m from the base

    # ----------------------------------------------------------------------------------------- steps
    def send_valid_and_closing(self) -> None:
        """Steps valid (a joint trajectory and a target_pose stream) and close_gripper."""
        self.step = "valid"
        self.trajectories.publish(self.line(VALID_OFFSETS, sequence=1))
        self.spin_until(lambda: self.count("valid", 10) > 0, 60)
        # some target_pose stream (waited for by count: at 30 Hz it takes 0.2 s, longer on a loaded machine)
        self.spin_until(lambda: sum(1 for m in self.received["target_pose"] if m["step"] == "valid") >= 5, 60)

        # Closing on the way: the gripper command changes once, when the first closing waypoint is due.
        self.step = "close_gripper"
        self.trajectories.publish(self.line(VALID_OFFSETS, sequence=9, gripper=[1.0] * 3 + [-1.0] * 7))
        self.spin_until(lambda: any(m["step"] == "close_gripper" for m in self.received["gripper_command"]), 60)
        self.spin_for(0.5)

    def send_bad_trajectories(self) -> None:
        """Steps nan, unreachable and out_of_bounds."""
        self.step = "nan"
        bad = self.line(VALID_OFFSETS, sequence=2)
        bad.poses[4].position.y = float("nan")
        self.trajectories.publish(bad)
        self.spin_for(1.0)

        self.step = "unreachable"
        self.trajectories.publish(self.line(np.tile(self.far(), (20, 1)), period=0.5, sequence=3))
        self.spin_for(1.5)

        self.step = "out_of_bounds"
        self.trajectories.publish(self.line(np.tile([0.9 - self.start_position[0], 0.0, 0.0], (10, 1)), sequence=4))
        self.spin_until(lambda: self.count("out_of_bounds", 10) > 0, 60)

    def press_and_release_estop(self) -> float:
        """Steps estop_on, during_estop, estop_off and after_estop; returns how long the first hold took."""
        # The estop arrives while the node is busy failing IK on an unreachable trajectory: the hold must
        # come out at once anyway, not after the planning.
        self.step = "estop_on"
        self.trajectories.publish(self.line(np.tile(self.far(), (20, 1)), period=0.5, sequence=8))
        self.spin_for(0.05)
        pressed_at = time.monotonic()
        self.estop.publish(Bool(data=True))
        self.spin_until(lambda: self.count("estop_on", 1) >= 1, 60)
        hold_latency = time.monotonic() - pressed_at
        self.spin_until(lambda: self.count("estop_on", 1) >= 3, 60)  # the hold, repeated at the control rate

        self.step = "during_estop"
        self.trajectories.publish(self.line(VALID_OFFSETS, sequence=5))
        self.spin_for(1.0)

        self.step = "estop_off"
        self.estop.publish(Bool(data=False))
        self.spin_for(0.5)

        self.step = "after_estop"
        self.trajectories.publish(self.line(VALID_OFFSETS, sequence=6))
        self.spin_until(lambda: self.count("after_estop", 10) > 0, 60)  # may queue behind trajectory 8's IK
        return hold_latency

    def send_with_stale_joint_states(self) -> None:
        """Step bad_joint_states: joint states turn NaN, then a trajectory comes (to be rejected)."""
        self.step = "bad_joint_states"
        self.bad_joints = True
        self.spin_for(1.0)  # well past the node's joint_state_timeout
        self.trajectories.publish(self.line(VALID_OFFSETS, sequence=7))  # stale joints now: must be rejected
        self.spin_for(1.0)

    def results(self, hold_latency: float) -> dict:
        return {"received": self.received, "hold_latency": hold_latency,
                "start_position": self.start_position.tolist(), "start_quaternion": self.start_quaternion.tolist(),
                "valid_offsets": VALID_OFFSETS.tolist()}


def main() -> int:
    args = parse_args()
    rclpy.init()
    driver = ArmDriver(args)
    if not driver.wait_for_arm_interface():
        print("arm_interface never matched", flush=True)
        return 1
    driver.spin_for(0.5)  # joint states reach the node
    driver.send_valid_and_closing()
    driver.send_bad_trajectories()
    hold_latency = driver.press_and_release_estop()
    driver.send_with_stale_joint_states()
    with open(args.out, "w") as handle:
        json.dump(driver.results(hold_latency), handle)
    driver.node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
