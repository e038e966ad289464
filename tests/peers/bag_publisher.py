"""Peer process publishing numbered messages for the recorder tests.

Every message carries its number i (1, 2, ...) so a bag can be checked for gaps:
  trajectory  openhelix_msgs/EETrajectory  reliable      sequence = i, 3 waypoints at z = i / 1000
  cloud       sensor_msgs/PointCloud2      best effort   header.stamp.sec = i, 500 points, x = i
  chatter     std_msgs/String              reliable      data = "message i"
  feedback    openhelix_msgs/action/RunEvaluation_FeedbackMessage  reliable: a type the recorder cannot
              load (action types are not exported as messages), to check it says so and carries on
  latent      openhelix_msgs/GoalLatent    reliable, transient local: ONE message (sequence 1),
              published before anything else, so only a late-joining transient-local reader gets it.

Usage: bag_publisher.py --count N [--rate HZ] [--wait-subscribers] KIND...
Prints READY once its publishers exist (after every publisher has a subscriber with
--wait-subscribers), "SENT i" after each round, and "DONE" when all N rounds are out; then stays up
until interrupted (a publisher that vanishes early can take undelivered reliable samples with it).
"""

import argparse
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from openhelix_ros.common.conversions import points_to_pointcloud2, trajectory_to_msg
from openhelix_ros.common.messages import message_class

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)

KINDS = {
    "trajectory": ("/rec/trajectory", "openhelix_msgs/msg/EETrajectory", RELIABLE),
    "cloud": ("/rec/cloud", "sensor_msgs/msg/PointCloud2", BEST_EFFORT),
    "chatter": ("/rec/chatter", "std_msgs/msg/String", RELIABLE),
    "feedback": ("/rec/feedback", "openhelix_msgs/action/RunEvaluation_FeedbackMessage", RELIABLE),
    "latent": ("/rec/latent", "openhelix_msgs/msg/GoalLatent", LATCHED),
}


def message_type(type_name: str):
    if type_name.endswith("_FeedbackMessage"):
        from openhelix_msgs.action import RunEvaluation
        return RunEvaluation.Impl.FeedbackMessage
    return message_class(type_name)


def make(kind: str, i: int):
    if kind == "trajectory":
        return trajectory_to_msg(np.full((3, 3), i / 1000.0), np.tile([0.0, 0.0, 0.0, 1.0], (3, 1)),
                                 np.ones(3), 1 / 30, sequence=i)
    if kind == "cloud":
        xyz = np.zeros((500, 3), dtype=np.float32)
        xyz[:, 0] = i
        xyz[:, 1] = np.arange(500)
        return points_to_pointcloud2(xyz, np.full((500, 3), 7, dtype=np.uint8), stamp=i * 1_000_000_000)
    if kind == "feedback":
        return message_type(KINDS[kind][1])()
    if kind == "chatter":
        return message_class("std_msgs/msg/String")(data=f"message {i}")
    message = message_class("openhelix_msgs/msg/GoalLatent")(sequence=i, instruction="open the drawer")
    message.latent = [0.5] * 512
    return message


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.0, help="rounds per second; 0: as fast as possible")
    parser.add_argument("--wait-subscribers", action="store_true")
    parser.add_argument("kinds", nargs="+", choices=sorted(KINDS))
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("bag_publisher")
    publishers = {kind: node.create_publisher(message_type(KINDS[kind][1]), KINDS[kind][0], KINDS[kind][2])
                  for kind in args.kinds}
    if "latent" in publishers:
        publishers.pop("latent").publish(make("latent", 1))  # kept alive by the node, latched
    if args.wait_subscribers:
        deadline = time.monotonic() + 30
        # The recorder never subscribes to what it cannot load, so "feedback" is not waited for.
        awaited = [p for kind, p in publishers.items() if kind != "feedback"]
        while any(p.get_subscription_count() == 0 for p in awaited):
            if time.monotonic() > deadline:
                print("TIMEOUT waiting for subscribers", flush=True)
                return 1
            rclpy.spin_once(node, timeout_sec=0.05)
    print("READY", flush=True)
    for i in range(1, args.count + 1):
        for kind, publisher in publishers.items():
            publisher.publish(make(kind, i))
        print(f"SENT {i}", flush=True)
        if args.rate > 0:
            time.sleep(1.0 / args.rate)
    print("DONE", flush=True)
    try:
        while True:
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
