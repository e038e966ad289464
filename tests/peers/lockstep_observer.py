"""Peer process that plays the evaluator for a lockstep bridge + system2 + system1 graph: sends one
instruction (repeated until System 2 has it), records every goal_latent (sequence -> observation
stamp; and its shape as this process reads it: tokens, width, coarse actions, or why it was refused)
and every ee_trajectory (stamp, latent_sequence) until --trajectories have arrived, and writes them to
--out as JSON."""

import argparse
import json
import sys
import time

import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from openhelix_msgs.msg import EETrajectory, GoalLatent, Instruction
from openhelix_ros.common.conversions import goal_latent_from_msg, make_header, stamp_to_ns

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATENT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--trajectories", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("lockstep_observer")
    latents, shapes, trajectories = {}, {}, []

    def on_latent(message: GoalLatent) -> None:
        latents[int(message.sequence)] = stamp_to_ns(message.observation_stamp)
        try:
            goal = goal_latent_from_msg(message).goal
        except ValueError as error:
            shapes[int(message.sequence)] = {"error": str(error)}
            return
        coarse = goal.coarse
        shapes[int(message.sequence)] = {
            "tokens": goal.num_tokens, "token_dim": goal.token_dim, "declared": [message.num_tokens, message.token_dim],
            "coarse": 0 if coarse is None else len(coarse),
            "coarse_gripper": [] if coarse is None else coarse.gripper_open.tolist()}

    node.create_subscription(GoalLatent, "goal_latent", on_latent, LATENT)
    node.create_subscription(EETrajectory, "ee_trajectory", lambda m: trajectories.append(
        {"stamp": stamp_to_ns(m.header.stamp), "latent_sequence": int(m.latent_sequence),
         "latent_stamp": stamp_to_ns(m.latent_stamp), "poses": len(m.poses)}), RELIABLE)
    instructions = node.create_publisher(Instruction, "instruction", RELIABLE)
    end = time.monotonic() + args.timeout
    # The trajectories are volatile: instruct only once System 1's publisher is discovered, and a moment
    # more for the match, or the first steps' plans go out before this subscription hears them.
    matched_at = None
    next_instruction = 0.0
    while time.monotonic() < end and len(trajectories) < args.trajectories:
        if matched_at is None and node.count_publishers("ee_trajectory") > 0:
            matched_at = time.monotonic()
        ready = matched_at is not None and time.monotonic() > matched_at + 0.5
        if ready and not latents and time.monotonic() > next_instruction:
            instructions.publish(Instruction(header=make_header(""), text="open the drawer", task="open_drawer",
                                             sequence=1))
            next_instruction = time.monotonic() + 0.5
        rclpy.spin_once(node, timeout_sec=0.05)
    with open(args.out, "w") as handle:
        json.dump({"latents": {str(k): v for k, v in latents.items()},
                   "shapes": {str(k): v for k, v in shapes.items()}, "trajectories": trajectories}, handle)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(trajectories) >= args.trajectories else 1


if __name__ == "__main__":
    sys.exit(main())
