"""Peer process: a stand-in evaluation server for the cross-process action test.

serve   offers run_evaluation (openhelix_msgs/action/RunEvaluation): "runs" num_sequences chains of
        0.05 s each, chain i completing i % 6 subtasks, sends feedback after each, honours cancel.
client OUT  sends one goal to completion and a second one it cancels after two feedbacks; writes the
        feedback, results and final statuses to OUT as JSON.
"""

import argparse
import json
import sys
import time

import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.executors import MultiThreadedExecutor

from openhelix_msgs.action import RunEvaluation
from openhelix_ros.common.messages import message_to_dict

TASKS = ["open_drawer", "turn_on_led", "move_slider_left", "lift_red_block_table", "stack_block"]


def success_rates(completed: list[int]) -> list[float]:
    return [sum(c >= k for c in completed) / len(completed) if completed else 0.0 for k in range(1, 6)]


def execute(goal_handle):
    goal = goal_handle.request
    completed: list[int] = []
    result = RunEvaluation.Result()
    for index in range(goal.num_sequences):
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
            result.message = "cancelled"
            break
        time.sleep(0.05)
        completed.append(index % 6)
        feedback = RunEvaluation.Feedback(chain_tasks=TASKS, chain_completed=index % 6)
        feedback.progress.variant = goal.variant
        feedback.progress.run_name = goal.run_name
        feedback.progress.chain_index = index
        feedback.progress.num_chains = goal.num_sequences
        feedback.progress.success_rates = success_rates(completed)
        feedback.progress.average_length = float(sum(completed)) / len(completed)
        goal_handle.publish_feedback(feedback)
    else:
        goal_handle.succeed()
        result.success, result.message = True, "done"
    result.success_rates = success_rates(completed)
    result.average_length = float(sum(completed)) / len(completed) if completed else 0.0
    result.num_sequences_done = len(completed)
    result.results_path = f"runs/{goal.run_name}"
    return result


def serve() -> int:
    node = rclpy.create_node("evaluation_action_server")
    ActionServer(node, RunEvaluation, "run_evaluation", execute_callback=execute,
                 goal_callback=lambda goal: GoalResponse.ACCEPT if goal.num_sequences > 0 else GoalResponse.REJECT,
                 cancel_callback=lambda goal_handle: CancelResponse.ACCEPT)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    print("READY", flush=True)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    return 0


def run_goal(node, client, goal, cancel_after=None):
    feedback: list[dict] = []
    handle_future = client.send_goal_async(goal, feedback_callback=lambda m: feedback.append(
        message_to_dict(m.feedback)))
    rclpy.spin_until_future_complete(node, handle_future, timeout_sec=10.0)
    goal_handle = handle_future.result()
    if not goal_handle.accepted:
        return {"accepted": False}
    cancel_response = None
    if cancel_after is not None:
        deadline = time.monotonic() + 10.0
        while len(feedback) < cancel_after and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        cancel_future = goal_handle.cancel_goal_async()
        rclpy.spin_until_future_complete(node, cancel_future, timeout_sec=10.0)
        cancel_response = len(cancel_future.result().goals_canceling)
    result_future = goal_handle.get_result_async()
    rclpy.spin_until_future_complete(node, result_future, timeout_sec=30.0)
    outcome = result_future.result()
    return {"accepted": True, "feedback": feedback, "status": outcome.status,
            "result": message_to_dict(outcome.result), "goals_canceling": cancel_response}


def client(out: str) -> int:
    node = rclpy.create_node("evaluation_action_client")
    action_client = ActionClient(node, RunEvaluation, "run_evaluation")
    if not action_client.wait_for_server(timeout_sec=20.0):
        print("run_evaluation server not available", file=sys.stderr)
        return 1
    outcomes = {
        "complete": run_goal(node, action_client, RunEvaluation.Goal(
            num_sequences=4, variant="standard", episode_length=360, seed=1, run_name="roundtrip")),
        "cancelled": run_goal(node, action_client, RunEvaluation.Goal(
            num_sequences=200, variant="enriched", seed=2, run_name="cancel-me"), cancel_after=2),
        "rejected": run_goal(node, action_client, RunEvaluation.Goal(num_sequences=0)),
        "status_codes": {"succeeded": GoalStatus.STATUS_SUCCEEDED, "canceled": GoalStatus.STATUS_CANCELED},
    }
    with open(out, "w") as handle:
        json.dump(outcomes, handle)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "client"])
    parser.add_argument("--out")
    args = parser.parse_args()
    rclpy.init()
    return serve() if args.mode == "serve" else client(args.out)


if __name__ == "__main__":
    sys.exit(main())
