"""Peer process that plays the bridge and the evaluator for a running system2 + system1 pair.

At 10 Hz (wall-clock stamps) it publishes a static-camera image, a point cloud, ee_pose and
joint_states, all with the same stamp; once a second it (re)sends the instruction, so a System 2 that
starts later still gets one. Prints ``TRAJ <sequence> <latent_sequence> <stamp_ns>`` for every
ee_trajectory it receives and ``LATENT <sequence> <observation_stamp_ns>`` for every goal latent.
Runs until SIGINT or SIGTERM.
"""

import signal
import sys

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image, JointState, PointCloud2

from openhelix_msgs.msg import EETrajectory, GoalLatent, Instruction
from openhelix_ros.common.conversions import (
    joint_state_to_msg,
    make_header,
    points_to_pointcloud2,
    pose_stamped_to_msg,
    rgb_to_image,
    stamp_to_ns,
)

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATENT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)
POSITION = np.array([0.05, -0.1, 0.35])
QUATERNION = Rotation.from_euler("xyz", [np.pi, 0, np.pi / 2]).as_quat()
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]


def main() -> int:
    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("graph_feeder")
    rng = np.random.default_rng(0)
    xyz = rng.uniform([-0.4, -0.4, 0.0], [0.4, 0.3, 0.3], (1500, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (1500, 3), dtype=np.uint8)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    images = node.create_publisher(Image, "camera/static/image_raw", RELIABLE)
    points = node.create_publisher(PointCloud2, "points", RELIABLE)
    poses = node.create_publisher(PoseStamped, "ee_pose", RELIABLE)
    joints = node.create_publisher(JointState, "joint_states", RELIABLE)
    instructions = node.create_publisher(Instruction, "instruction", RELIABLE)

    def tick():
        stamp = node.get_clock().now().nanoseconds
        images.publish(rgb_to_image(image, "static_camera", stamp))
        poses.publish(pose_stamped_to_msg(POSITION, QUATERNION, "world", stamp))
        joints.publish(joint_state_to_msg(JOINTS, [0.0] * 7 + [0.04, 0.04], stamp=stamp))
        points.publish(points_to_pointcloud2(xyz, rgb, "world", stamp))

    def instruct():
        instructions.publish(Instruction(header=make_header(""), text="open the drawer", task="open_drawer",
                                         sequence=1))

    def on_trajectory(message: EETrajectory):
        print(f"TRAJ {message.sequence} {message.latent_sequence} {stamp_to_ns(message.header.stamp)}", flush=True)

    def on_latent(message: GoalLatent):
        print(f"LATENT {message.sequence} {stamp_to_ns(message.observation_stamp)}", flush=True)

    node.create_subscription(EETrajectory, "ee_trajectory", on_trajectory, RELIABLE)
    node.create_subscription(GoalLatent, "goal_latent", on_latent, LATENT)
    node.create_timer(0.1, tick)
    node.create_timer(1.0, instruct)
    print("READY", flush=True)
    while not stop["now"]:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
