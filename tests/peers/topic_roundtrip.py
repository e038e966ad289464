"""Peer process for the interface round-trip test.

publish TYPE...   publishes sample_message(TYPE, seed) on /roundtrip/<Type> (reliable, transient local,
                  so a subscriber that joins late still gets it) until interrupted.
subscribe OUT TYPE...  waits for one message of each type and writes every field, as received, to OUT
                  (JSON: {type: fields}); exits 0 when all arrived, 1 on timeout.
"""

import argparse
import json
import sys
import time

import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from support.samples import sample_message

from openhelix_ros.common.messages import message_class, message_to_dict

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def topic_of(type_name: str) -> str:
    return "/roundtrip/" + type_name.split("/")[-1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["publish", "subscribe"])
    parser.add_argument("--out")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("types", nargs="+")
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node(f"roundtrip_{args.mode}")
    if args.mode == "publish":
        publishers = []
        for type_name in args.types:
            publisher = node.create_publisher(message_class(type_name), topic_of(type_name), LATCHED)
            publisher.publish(sample_message(type_name, args.seed))
            publishers.append(publisher)
        print("READY", flush=True)
        try:
            rclpy.spin(node)
        except KeyboardInterrupt:
            pass
        return 0

    received: dict[str, dict] = {}
    for type_name in args.types:
        node.create_subscription(
            message_class(type_name), topic_of(type_name),
            lambda message, name=type_name: received.setdefault(name, message_to_dict(message)), LATCHED)
    print("READY", flush=True)
    deadline = time.monotonic() + args.timeout
    while len(received) < len(args.types) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    with open(args.out, "w") as handle:
        json.dump(received, handle)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(received) == len(args.types) else 1


if __name__ == "__main__":
    sys.exit(main())
