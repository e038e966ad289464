"""``openhelix say "open the drawer" [--task open_drawer]``: instruct a running graph.

Publishes one openhelix_msgs/Instruction on ``instruction`` (reliable, latched, as the evaluator sends
them) once its readers are matched (their number held still for a while, or those of ``--readers`` nodes),
and waits until every reader has acknowledged it. The ``task`` id starts
the simulator's subtask (CALVIN-D moves that task's block) and tells the scripted expert what to do;
System 2 reads the text. Each call uses a new sequence number (milliseconds since the epoch), so
repeating the same words starts a new instruction.
"""

from __future__ import annotations

import argparse
import sys
import time

SETTLE_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", help="the instruction in words")
    parser.add_argument("--task", default="", help="CALVIN task id (e.g. open_drawer); empty: none")
    parser.add_argument("--namespace", default="", help="the graph's namespace, if it runs in one")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reader")
    parser.add_argument("--readers", type=int, default=0,
                        help="publish as soon as the readers of this many nodes matched (0: once their number held still "
                             f"for {SETTLE_SECONDS:g} s)")


def run(args: argparse.Namespace) -> int:
    import rclpy

    from openhelix_msgs.msg import Instruction
    from openhelix_ros.common import graph
    from openhelix_ros.common.conversions import make_header
    from openhelix_ros.common.node_utils import INSTRUCTION_PUBLISHER_QOS
    from openhelix_ros.common.processes import matched_reader_nodes, subscriber_nodes, wait_for
    from openhelix_ros.system2.core import check_instruction

    try:
        text = check_instruction(args.text)
    except ValueError as error:
        print(f"openhelix say: {error}", file=sys.stderr)
        return 2
    if args.task:
        from openhelix_ros.sim.tasks import TASKS

        if args.task not in TASKS:
            print(f"openhelix say: unknown task {args.task!r}; CALVIN's are {', '.join(sorted(TASKS))}",
                  file=sys.stderr)
            return 2
    rclpy.init()
    node = rclpy.create_node("openhelix_say", namespace=args.namespace or None)
    try:
        publisher = node.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
        try:
            wait_for(node, lambda: publisher.get_subscription_count() > 0, args.timeout,
                     f"a reader of {node.resolve_topic_name(graph.INSTRUCTION)} (is a graph running?)")
        except TimeoutError as error:
            print(f"openhelix say: {error}", file=sys.stderr)
            return 1
        # Readers are matched one process at a time during discovery, and a reader that matches after
        # this process is gone never gets the message: publish once their number has held still for a
        # while, or once --readers nodes have every reader of theirs matched (a node has two: see
        # node_utils.subscribe_instructions).
        count, steady_since = publisher.get_subscription_count(), time.monotonic()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
            now_count = publisher.get_subscription_count()
            if now_count != count:
                count, steady_since = now_count, time.monotonic()
            if (args.readers and matched_reader_nodes(node, publisher, graph.INSTRUCTION) >= args.readers) or \
                    (not args.readers and time.monotonic() - steady_since >= SETTLE_SECONDS):
                break
        message = Instruction(header=make_header("", node.get_clock().now().nanoseconds), text=text,
                              task=args.task, sequence=time.time_ns() // 1_000_000)
        publisher.publish(message)
        acknowledged = publisher.wait_for_all_acked(rclpy.duration.Duration(seconds=5.0))
        readers = len(subscriber_nodes(node, graph.INSTRUCTION))
        print(f"said {text!r}" + (f" (task {args.task})" if args.task else "")
              + f" to {readers} node(s)" + ("" if acknowledged else "; not every reader acknowledged it"),
              flush=True)
        return 0 if acknowledged else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
