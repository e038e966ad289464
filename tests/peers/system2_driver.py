"""Peer process that plays camera and evaluator for the system2 node test.

Publishes instructions and static-camera images (good and bad), records every goal_latent it receives
and writes them to --out as JSON.

--mode realtime: an empty instruction, one of 100,000 characters, a real one, a mono8 image, an rgb8 image with a short buffer,
    then two good images; waits for the latents of both.
--mode lockstep: /clock and one image per env step 0..--steps-1 (sim time step / 30); waits for the
    latents of the steps System 2 must encode (0, N, 2N, ...).
"""

import argparse
import array
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from openhelix_msgs.msg import GoalLatent, Instruction
from openhelix_ros.common.conversions import make_header, ns_to_stamp, rgb_to_image, stamp_to_ns

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
STEP_NS = 1_000_000_000 / 30


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=("realtime", "lockstep"), required=True)
    parser.add_argument("--period", type=int, default=0, help="latent_period_steps of the node (lockstep)")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("system2_driver")
    images = node.create_publisher(Image, "camera/static/image_raw", RELIABLE)
    instructions = node.create_publisher(Instruction, "instruction", RELIABLE)
    clock = node.create_publisher(Clock, "/clock", RELIABLE)
    received = []

    def on_latent(message: GoalLatent):
        received.append({"sequence": int(message.sequence), "size": len(message.latent),
                         "finite": bool(np.all(np.isfinite(np.asarray(message.latent)))),
                         "observation_stamp": stamp_to_ns(message.observation_stamp),
                         "stamp": stamp_to_ns(message.header.stamp), "instruction": message.instruction,
                         "model_id": message.model_id, "inference_time": float(message.inference_time)})

    node.create_subscription(GoalLatent, "goal_latent", on_latent, LATCHED)

    def spin_until(predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            rclpy.spin_once(node, timeout_sec=0.02)
        return predicate()

    if not spin_until(lambda: images.get_subscription_count() > 0 and instructions.get_subscription_count() > 0
                      and node.count_publishers("goal_latent") > 0, 60):
        print("system2 never matched", flush=True)
        return 1
    spin_until(lambda: False, 0.3)  # let both ends finish matching
    rng = np.random.default_rng(0)

    def image(stamp_ns: int):
        return rgb_to_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "static_camera", stamp_ns)

    expected: list[int] = []
    if args.mode == "realtime":
        instructions.publish(Instruction(header=make_header(""), text="   ", task="", sequence=1))
        # 100,000 characters once asked the tiny model for 40 GB and killed System 2's worker.
        instructions.publish(Instruction(header=make_header(""), text="open the drawer " * 6250, task="",
                                         sequence=1))
        instructions.publish(Instruction(header=make_header(""), text="open the drawer " * 60, task="",
                                         sequence=1))  # under 1000 characters, over 128 tokens
        instructions.publish(Instruction(header=make_header(""), text="open the drawer", task="open_drawer",
                                         sequence=2))
        spin_until(lambda: False, 0.5)
        mono = rgb_to_image(np.zeros((8, 8, 3), np.uint8), "static_camera", 1_000)
        mono.encoding, mono.step = "mono8", 8
        mono.data = array.array("B", bytes(64))
        images.publish(mono)
        short = image(2_000)
        short.data = short.data[:100]
        images.publish(short)
        spin_until(lambda: False, 0.5)
        for stamp in (1_700_000_000_123_456_789, 1_700_000_001_000_000_000):
            images.publish(image(stamp))
            expected.append(stamp)
            spin_until(lambda s=stamp: any(r["observation_stamp"] == s for r in received), 30)
    else:
        instructions.publish(Instruction(header=make_header(""), text="lift the blue block", task="lift_blue_block",
                                         sequence=1))
        spin_until(lambda: False, 0.5)
        for step in range(args.steps):
            stamp = int(round(step * STEP_NS))
            clock.publish(Clock(clock=ns_to_stamp(stamp)))
            images.publish(image(stamp))
            if args.period == 0 or step % args.period == 0:
                expected.append(stamp)
            spin_until(lambda: False, 0.15)
        spin_until(lambda: all(any(r["observation_stamp"] == s for r in received) for s in expected), 60)
        spin_until(lambda: False, 1.0)  # anything extra would arrive now

    with open(args.out, "w") as handle:
        json.dump({"received": received, "expected": expected}, handle)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
