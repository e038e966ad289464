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
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--base-position", type=float, nargs=3, required=True)
    parser.add_argument("--base-orientation", type=float, nargs=4, required=True)
    parser.add_argument("--tcp-offset", type=float, required=True)
    args = parser.parse_args()
    kinematics = PandaKinematics(tcp_offset=args.tcp_offset, base=pose_matrix(args.base_position,
                                                                              args.base_orientation))
    start_position, start_quaternion = matrix_to_pose(kinematics.forward(READY_JOINTS))

    rclpy.init()
    node = rclpy.create_node("arm_driver")
    joint_states = node.create_publisher(JointState, "joint_states", RELIABLE)
    trajectories = node.create_publisher(EETrajectory, "ee_trajectory", RELIABLE)
    estop = node.create_publisher(Bool, "estop", RELIABLE)
    received = {"joint_trajectory": [], "target_pose": [], "gripper_command": []}
    step = {"name": "startup"}

    def on_joint_trajectory(message: JointTrajectory):
        received["joint_trajectory"].append({
            "step": step["name"], "names": list(message.joint_names),
            "positions": [list(point.positions) for point in message.points],
            "times": [duration_to_seconds(point.time_from_start) for point in message.points]})

    def on_target_pose(message: PoseStamped):
        p, o = message.pose.position, message.pose.orientation
        received["target_pose"].append({"step": step["name"], "frame": message.header.frame_id,
                                        "position": [p.x, p.y, p.z], "quaternion": [o.x, o.y, o.z, o.w]})

    node.create_subscription(JointTrajectory, "joint_trajectory", on_joint_trajectory, RELIABLE)
    node.create_subscription(PoseStamped, "target_pose", on_target_pose, RELIABLE)
    node.create_subscription(Float64MultiArray, "gripper_command",
                             lambda m: received["gripper_command"].append({"step": step["name"], "data": list(m.data)}),
                             RELIABLE)
    bad_joints = {"on": False}

    def publish_joints():
        positions = READY_JOINTS.copy()
        if bad_joints["on"]:
            positions[3] = np.nan
        joint_states.publish(joint_state_to_msg(list(JOINT_NAMES) + ["panda_finger_joint1"], [*positions, 0.04],
                                                stamp=node.get_clock().now().nanoseconds))

    node.create_timer(0.02, publish_joints)

    def spin_for(seconds: float):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.01)

    def spin_until(predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            rclpy.spin_once(node, timeout_sec=0.01)
        return False

    def count(name: str, points: int | None = None) -> int:
        return sum(1 for m in received["joint_trajectory"]
                   if m["step"] == name and (points is None or len(m["positions"]) == points))

    def line(offsets, period=0.1, sequence=1, gripper=1.0):
        positions = start_position + np.asarray(offsets, dtype=float)
        return trajectory_to_msg(positions, np.tile(start_quaternion, (len(positions), 1)),
                                 np.broadcast_to(np.asarray(gripper, dtype=float), len(positions)), period,
                                 sequence=sequence)

    ok = spin_until(lambda: all(p.get_subscription_count() > 0 for p in (joint_states, trajectories, estop))
                    and node.count_publishers("joint_trajectory") > 0 and node.count_publishers("target_pose") > 0,
                    30)
    if not ok:
        print("arm_interface never matched", flush=True)
        return 1
    spin_for(0.5)  # joint states reach the node

    valid_offsets = np.outer(np.arange(1, 11), [0.01, 0.0, 0.0])  # 1 cm per 0.1 s along world x
    step["name"] = "valid"
    trajectories.publish(line(valid_offsets, sequence=1))
    spin_until(lambda: count("valid", 10) > 0, 60)
    # some target_pose stream (waited for by count: at 30 Hz it takes 0.2 s, longer on a loaded machine)
    spin_until(lambda: sum(1 for m in received["target_pose"] if m["step"] == "valid") >= 5, 60)

    # Closing on the way: the gripper command changes once, when the first closing waypoint is due.
    step["name"] = "close_gripper"
    trajectories.publish(line(valid_offsets, sequence=9, gripper=[1.0] * 3 + [-1.0] * 7))
    spin_until(lambda: any(m["step"] == "close_gripper" for m in received["gripper_command"]), 60)
    spin_for(0.5)

    step["name"] = "nan"
    bad = line(valid_offsets, sequence=2)
    bad.poses[4].position.y = float("nan")
    trajectories.publish(bad)
    spin_for(1.0)

    step["name"] = "unreachable"
    far = np.array([0.6, 0.36, 0.6]) - start_position  # inside the box, 1.1 m from the base
    trajectories.publish(line(np.tile(far, (20, 1)), period=0.5, sequence=3))
    spin_for(1.5)

    step["name"] = "out_of_bounds"
    trajectories.publish(line(np.tile([0.9 - start_position[0], 0.0, 0.0], (10, 1)), sequence=4))
    spin_until(lambda: count("out_of_bounds", 10) > 0, 60)

    # The estop arrives while the node is busy failing IK on an unreachable trajectory: the hold must
    # come out at once anyway, not after the planning.
    step["name"] = "estop_on"
    trajectories.publish(line(np.tile(far, (20, 1)), period=0.5, sequence=8))
    spin_for(0.05)
    pressed_at = time.monotonic()
    estop.publish(Bool(data=True))
    spin_until(lambda: count("estop_on", 1) >= 1, 60)
    hold_latency = time.monotonic() - pressed_at
    spin_until(lambda: count("estop_on", 1) >= 3, 60)  # the hold, repeated at the control rate

    step["name"] = "during_estop"
    trajectories.publish(line(valid_offsets, sequence=5))
    spin_for(1.0)

    step["name"] = "estop_off"
    estop.publish(Bool(data=False))
    spin_for(0.5)

    step["name"] = "after_estop"
    trajectories.publish(line(valid_offsets, sequence=6))
    spin_until(lambda: count("after_estop", 10) > 0, 60)  # may queue behind trajectory 8's IK

    step["name"] = "bad_joint_states"
    bad_joints["on"] = True
    spin_for(1.0)  # well past the node's joint_state_timeout
    trajectories.publish(line(valid_offsets, sequence=7))  # stale joints now: must be rejected
    spin_for(1.0)

    with open(args.out, "w") as handle:
        json.dump({"received": received, "hold_latency": hold_latency, "start_position": start_position.tolist(),
                   "start_quaternion": start_quaternion.tolist(), "valid_offsets": valid_offsets.tolist()}, handle)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
