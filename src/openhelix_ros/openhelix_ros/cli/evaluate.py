"""``openhelix eval``: run the CALVIN protocol on a running graph through the evaluator's action.

Sends one RunEvaluation goal to ``run_evaluation`` (the ``evaluator`` node must be running, with a
bridge and the policy nodes), prints a line per finished chain, then the results table and where
the report went. Ctrl-C cancels the goal; the evaluator still writes the partial results.
Exit status: 0 when the run completed, 1 when it failed or was rejected, 2 for bad arguments,
130 when cancelled.

``--tasks a,b`` runs single-subtask episodes of those tasks instead of chains: the task list is the
evaluator's ``tasks`` parameter (the RunEvaluation goal has no field for it), so the command sets it
through the evaluator's parameter service for this run and puts the old value back afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time

from openhelix_ros.evaluation.core import VARIANTS, EvaluationConfig, EvaluationError
from openhelix_ros.sim.protocol import PROTOCOLS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--num-sequences", type=int, default=10, help="chains to run (CALVIN: 1000)")
    parser.add_argument("--variant", default="standard", help=f"one of {', '.join(VARIANTS)}")
    add_protocol_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the chain sampling")
    parser.add_argument("--run-name", default="", help="results go to runs/<run-name>/ (default: date and time)")
    parser.add_argument("--namespace", default="", help="namespace of the graph (where run_evaluation lives)")
    parser.add_argument("--server-timeout", type=float, default=30.0,
                        help="seconds to wait for the evaluator's action server")
    parser.add_argument("--json", action="store_true", help="print the final result as one JSON object")
    parser.add_argument("--tasks", default="",
                        help="comma-separated CALVIN task ids: -n single-subtask episodes of these tasks in turn "
                             "instead of chains of five (per-task success)")


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """--protocol and --episode-length, shared with ``openhelix demo``."""
    parser.add_argument("--protocol", default="calvin", choices=PROTOCOLS,
                        help="calvin: CALVIN's protocol (env steps); release: the released OpenHelix / 3D Diffuser "
                             "Actor loop the paper's tables use (policy calls of up to 20 open-loop waypoints, "
                             "positions clipped to CALVIN's statistics)")
    parser.add_argument("--episode-length", type=int, default=0,
                        help="budget per subtask: env steps (calvin; 0 = 360) or policy calls (release; 0 = 60)")


def _action_name(namespace: str) -> str:
    from openhelix_ros.common import graph

    namespace = namespace.strip("/")
    return f"/{namespace}/{graph.RUN_EVALUATION}" if namespace else graph.RUN_EVALUATION


def run(args: argparse.Namespace) -> int:
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    config = EvaluationConfig(num_sequences=args.num_sequences, variant=args.variant,
                              episode_length=args.episode_length, seed=args.seed, run_name=args.run_name, tasks=tasks,
                              protocol=args.protocol)
    return evaluate(config, namespace=args.namespace, server_timeout=args.server_timeout, json_output=args.json)


def evaluate(config: EvaluationConfig, namespace: str = "", server_timeout: float = 30.0,
             json_output: bool = False) -> int:
    """Send one RunEvaluation goal (``config``'s chains, variant, episode length, seed, run name and tasks)
    to the evaluator of a running graph, print its progress and result; returns the exit status.

    Owns its rclpy context, so a caller that already runs rclpy (``openhelix demo``) can call it."""
    # Same checks as the evaluator's, here so a typo gets a clear message rather than a bare rejection.
    try:
        config.validate()
    except EvaluationError as error:
        print(f"openhelix eval: {error}", file=sys.stderr)
        return 2

    import rclpy
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from openhelix_msgs.action import RunEvaluation

    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    # A context of its own, so that a caller that already runs rclpy (`openhelix demo`) can call run().
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("openhelix_eval", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        name = _action_name(namespace)
        client = ActionClient(node, RunEvaluation, name)
        print(f"waiting for the evaluator ({name})...", flush=True)
        if not client.wait_for_server(timeout_sec=server_timeout):
            print(f"openhelix eval: no evaluator serves {name} (is the graph running? "
                  "`openhelix demo` or eval.launch.py starts one)", file=sys.stderr)
            return 1
        goal = RunEvaluation.Goal(num_sequences=config.num_sequences, variant=config.variant,
                                  episode_length=config.episode_length, seed=config.seed, run_name=config.run_name,
                                  tasks=list(config.tasks), protocol=config.protocol)
        started = time.monotonic()
        handle_future = client.send_goal_async(goal, feedback_callback=_print_feedback)
        while not handle_future.done() and not interrupted:
            executor.spin_once(timeout_sec=0.1)
        if interrupted and not handle_future.done():
            return 130
        handle = handle_future.result()
        if not handle.accepted:
            print("openhelix eval: the evaluator rejected the goal (is another evaluation running? its log "
                  "says why)", file=sys.stderr)
            return 1
        print(f"evaluating {config.num_sequences} {'episodes' if config.tasks else 'chains'} ({config.variant}, "
              f"{config.protocol} protocol: {config.episode_length} {config.budget_unit} per subtask)...", flush=True)
        outcome = _wait_for_result(handle, executor, interrupted)
        _print_result(outcome.result, json_output, outcome.status, time.monotonic() - started)
        if outcome.status == GoalStatus.STATUS_CANCELED:
            return 130
        if outcome.status != GoalStatus.STATUS_SUCCEEDED or not outcome.result.success:
            print(f"openhelix eval: evaluation failed: {outcome.result.message}", file=sys.stderr)
            return 1
        return 0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        signal.signal(signal.SIGINT, previous)


def _print_feedback(message) -> None:
    feedback = message.feedback
    progress = feedback.progress
    done = progress.chain_index + 1
    print(f"chain {done}/{progress.num_chains}: {feedback.chain_completed}/{len(feedback.chain_tasks)}  "
          f"[{', '.join(feedback.chain_tasks[:feedback.chain_completed + 1])}]  "
          f"avg. len so far {progress.average_length:.2f}  ({progress.elapsed:.0f} s)", flush=True)


def _wait_for_result(handle, executor, interrupted: list):
    """Spin until the goal's result comes; a Ctrl-C meanwhile cancels the goal (the evaluator then writes
    the partial results and still answers)."""
    result_future = handle.get_result_async()
    cancel_sent = False
    while not result_future.done():
        if interrupted and not cancel_sent:
            print("cancelling; the evaluator writes the partial results...", flush=True)
            handle.cancel_goal_async()
            cancel_sent = True
        executor.spin_once(timeout_sec=0.1)
    return result_future.result()


def _print_result(result, json_output: bool, status: int, seconds: float) -> None:
    from openhelix_ros.evaluation.report import rates_table

    if json_output:
        from openhelix_ros.common.messages import message_to_dict

        values = message_to_dict(result)
        for key in ("success_rates", "average_length"):  # NaN (a failed run's: no score) is not JSON: null
            value = values[key]
            values[key] = ([r if math.isfinite(r) else None for r in value] if isinstance(value, list)
                           else value if math.isfinite(value) else None)
        print(json.dumps({"status": status, **values}, allow_nan=False))
        return
    print()
    if all(math.isfinite(rate) for rate in result.success_rates):  # a failed run's are NaN: no score
        print(rates_table(result.success_rates, result.average_length, result.num_sequences_done), end="")
    print(f"\n{result.message}  ({seconds:.0f} s)")
    if result.results_path:
        print(f"results: {result.results_path}/results.json, report: {result.results_path}/report.md")
