"""Peer process: an e-stop pendant on ``estop`` (std_msgs/Bool), reliable and transient local (latched),
as an operator's pendant node would publish it.

``--state pressed|released`` is the state at start, published at once; stdin lines ``press`` and
``release`` change it (published at once too). ``--rate HZ`` > 0 repeats the state as a heartbeat.
``--drop P`` makes it a lossy peer: each message, a change or a heartbeat, is deliberately not sent with
probability P (seeded by ``--seed``), so a press may be lost and only a later heartbeat carries it.
Prints READY once the publisher exists, ``SENT <state>`` for each message sent and ``DROPPED <state>``
for each one it chose to lose.
"""

import argparse
import random
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", choices=("pressed", "released"), default="released")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--drop", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("estop_pendant")
    publisher = node.create_publisher(Bool, "estop", LATCHED)
    chance = random.Random(args.seed)
    lock = threading.Lock()
    state = {"pressed": args.state == "pressed"}

    def send() -> None:
        with lock:
            pressed = state["pressed"]
            name = "pressed" if pressed else "released"
            if args.drop > 0 and chance.random() < args.drop:
                print(f"DROPPED {name}", flush=True)
                return
            publisher.publish(Bool(data=pressed))
            print(f"SENT {name}", flush=True)

    def read_commands() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command in ("press", "release"):
                with lock:
                    state["pressed"] = command == "press"
                send()

    send()
    if args.rate > 0:
        node.create_timer(1.0 / args.rate, send)
    threading.Thread(target=read_commands, daemon=True).start()
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
