"""``openhelix demo``: the whole graph on the embedded simulator, a few CALVIN chains, a report.

Starts calvin_bridge (embedded play table, lockstep), system2, system1 and the evaluator as separate
processes talking over DDS (the same nodes and parameter files as launch/eval.launch.py), runs
``--chains`` evaluation chains through the ``run_evaluation`` action, and writes the evaluator's report
plus a ``demo.md`` that says which models and checkpoint were used. ``--policy expert`` puts the
scripted expert (privileged state) in place of System 1 and System 2: the reference of what the graph
and protocol allow.

The checkpoint is ``--checkpoint`` when given, else the newest of: the training outputs under runs/ (a
directory with checkpoints/latest) and the checkpoints committed under checkpoints/ (system1/, system2/,
training_state.json), counting only those trained on demonstrations rather than the trainer's synthetic
data; else none: then the untrained configurations run, and the report says so.

What is evaluated: CALVIN's chains of five, unless the policy was trained on a few tasks (the
checkpoint's ``data_tasks``, written by the trainer), which are then evaluated as single-subtask
episodes, one per task by default; ``--tasks`` chooses either way.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from openhelix_ros.cli.evaluate import add_protocol_arguments
from openhelix_ros.common.environment import config_dir, project_root
from openhelix_ros.evaluation.core import EvaluationConfig, EvaluationError, task_episodes
from openhelix_ros.sim.backends import BACKENDS
from openhelix_training.checkpoint import is_training_checkpoint, training_runs, training_state_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chains", type=int, default=0,
                        help="evaluation chains (CALVIN uses 1000); with tasks, single-subtask episodes; "
                             "0: 3 chains, or one episode per task")
    parser.add_argument("--videos", type=int, default=10,
                        help="how many episodes are filmed into <run>/videos/ (0: none; not with --in-process)")
    parser.add_argument("--tasks", default="",
                        help="comma-separated CALVIN task ids: run --chains single-subtask episodes of these tasks "
                             "in turn instead of CALVIN's chains of five (per-task success of a policy trained "
                             "on a few tasks); empty: the tasks the checkpoint was trained on when it records "
                             "fewer than CALVIN's 34, else chains; 'all': CALVIN's chains")
    parser.add_argument("--variant", default="standard",
                        help="standard, enriched or dynamic-{left,forward,diagonal,circle}")
    parser.add_argument("--backend", choices=BACKENDS, default="embedded",
                        help="simulator behind the bridge: embedded (the PyBullet play table) or calvin (the real "
                             "calvin_env, installed by hand; see the README)")
    parser.add_argument("--policy", choices=["dual", "expert"], default="dual",
                        help="dual: System 2 + System 1 (default); expert: the scripted expert as reference")
    parser.add_argument("--checkpoint", default="auto",
                        help="training output or checkpoint directory; 'auto': newest under runs/ or checkpoints/; 'none'")
    parser.add_argument("--system2-model", default="embedded", help="System 2 configuration without checkpoint")
    parser.add_argument("--system1-model", default="default", help="System 1 configuration without checkpoint")
    parser.add_argument("--latent-period-steps", type=int, default=10, help="Asy(N); 0 = synchronous")
    add_protocol_arguments(parser)
    parser.add_argument("--waypoints-per-plan", type=int, default=0,
                        help="bridge: waypoints executed from one System 1 trajectory before the next plan "
                             "(0: config/calvin_bridge.yaml's, 1 = replan every step as the paper's evaluation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true",
                        help="run the graph's cores in this process, without DDS (evaluation/inprocess.py): for "
                             "sweeps; final figures are taken through the graph")
    parser.add_argument("--name", default="demo", help="results go to <runs-dir>/<name>/")
    parser.add_argument("--runs-dir", default="", help="default: runs/ of the project")


def trained_on_demonstrations(output: Path) -> bool:
    """Whether a training output (or checkpoint directory) learnt from real data (CALVIN episodes or
    recorded bags): a run on the trainer's synthetic data (smoke tests, the tiny recipe) is no policy for
    the play table."""
    try:
        data = json.loads(training_state_file(output).read_text())["train_config"]["data"]
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return data.get("kind") not in (None, "synthetic")


def newest_checkpoint(runs: Path, shipped: Path | None = None) -> Path | None:
    """The newest checkpoint trained on demonstrations, by the time its training_state.json was written:
    training outputs under ``runs`` and checkpoint directories under ``shipped`` (the repository's
    checkpoints/, whose files date from the clone, so a run trained here afterwards wins)."""
    candidates = training_runs(runs)
    if shipped is not None and shipped.is_dir():
        candidates += [d for d in shipped.iterdir() if is_training_checkpoint(d)]
    candidates = [c for c in candidates if trained_on_demonstrations(c)]
    return max(candidates, key=lambda path: training_state_file(path).stat().st_mtime, default=None)


def _two_decimals(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "n/a"


def checkpoint_tasks(checkpoint: str) -> list[str]:
    """The CALVIN tasks a checkpoint's policy was trained on (``data_tasks`` of its training_state.json,
    written by the trainer); [] when it does not say."""
    if not checkpoint:
        return []
    try:
        tasks = json.loads(training_state_file(checkpoint).read_text()).get("data_tasks") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [str(task) for task in tasks]


def evaluation_tasks(argument: str, checkpoint: str) -> tuple[list[str], str]:
    """(the tasks of single-subtask episodes, or [] for CALVIN's chains; why). A policy trained on a few
    tasks is evaluated on those: CALVIN's chains over all 34 would only show that it knows no others."""
    from openhelix_ros.sim.tasks import TASKS

    if argument.strip() == "all":
        return [], "CALVIN's chains (asked for all tasks)"
    given = [t.strip() for t in argument.split(",") if t.strip()]
    if given:
        return given, "the tasks asked for"
    trained = checkpoint_tasks(checkpoint)
    if trained and set(trained) < set(TASKS):
        return trained, "the tasks the checkpoint was trained on"
    return [], "CALVIN's chains"


def choose_checkpoint(argument: str, runs: Path, shipped: Path | None = None) -> tuple[str, str]:
    """(checkpoint directory or "", a sentence for the report saying what was used and why)."""
    if argument == "none":
        return "", "no checkpoint (asked for none): untrained configurations"
    if argument != "auto":
        path = Path(argument)
        if not path.exists():
            raise SystemExit(f"openhelix demo: checkpoint {path} does not exist")
        return str(path.resolve()), f"checkpoint {path} (given)"
    found = newest_checkpoint(runs, shipped)
    if found is None:
        return "", ("no checkpoint trained on demonstrations under runs/ or checkpoints/ (record some with "
                    "`openhelix collect`, then `openhelix train`): untrained configurations, so expect no task "
                    "to succeed")
    where = "committed under checkpoints/" if shipped is not None and found.parent == shipped else "under runs/"
    return str(found.resolve()), f"checkpoint {found} (newest trained on demonstrations, {where})"


@dataclass
class DemoPlan:
    """What a demo runs: the eval graph's launch arguments and overrides, and the evaluation."""

    policy: str
    checkpoint: str
    checkpoint_note: str
    arguments: dict
    extra: dict
    tasks: list[str]
    tasks_note: str
    chains: int
    evaluation: EvaluationConfig


def plan_demo(args: argparse.Namespace, runs: Path, root: Path) -> DemoPlan:
    """The demo's choices (checkpoint, tasks, chains) as the eval graph's arguments and an evaluation."""
    checkpoint, checkpoint_note = ("", "scripted expert (privileged state); no model") \
        if args.policy == "expert" else choose_checkpoint(args.checkpoint, runs, root / "checkpoints")
    # The graph of eval.launch.py (openhelix_ros/common/graphs.py), with the demo's choices as its arguments.
    arguments = {"backend": args.backend, "clock_mode": "lockstep", "latent_period_steps": str(args.latent_period_steps),
                 "policy": args.policy, "system2_model": args.system2_model, "system1_model": args.system1_model,
                 "checkpoint": checkpoint, "runs_dir": str(runs), "video_chains": str(args.videos)}
    bridge = {"seed": args.seed}
    if args.waypoints_per_plan:
        bridge["waypoints_per_plan"] = args.waypoints_per_plan
    tasks, tasks_note = evaluation_tasks(args.tasks, checkpoint)  # the expert has no checkpoint: chains
    chains = args.chains or (len(tasks) if tasks else 3)
    if tasks:
        try:
            task_episodes(1, 0, tasks)
        except EvaluationError as error:
            raise SystemExit(f"openhelix demo: --tasks: {error}") from None
    try:
        evaluation = EvaluationConfig(num_sequences=chains, variant=args.variant, episode_length=args.episode_length,
                                      seed=args.seed, run_name=args.name, tasks=tuple(tasks),
                                      backend=args.backend, protocol=args.protocol).validate()
    except EvaluationError as error:
        raise SystemExit(f"openhelix demo: {error}") from None
    return DemoPlan(args.policy, checkpoint, checkpoint_note, arguments, {"calvin_bridge": bridge}, tasks, tasks_note,
                    chains, evaluation)


def run(args: argparse.Namespace) -> int:
    root = project_root()
    runs = Path(args.runs_dir).resolve() if args.runs_dir else root / "runs"
    run_dir = runs / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_demo(args, runs, root)
    print(f"[demo] evaluating {plan.tasks_note}", flush=True)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM must end the demo like Ctrl-C does, through the finally that stops every node: an
    # orphaned lockstep bridge would otherwise wait for plans forever.
    signal.signal(signal.SIGTERM, interrupted)
    print(f"[demo] {plan.checkpoint_note}", flush=True)
    started = time.monotonic()
    status = run_in_process(plan, run_dir, root) if args.in_process else run_on_graph(plan, run_dir, root)
    summary = write_summary(args, plan, run_dir, status, time.monotonic() - started)
    print(summary, flush=True)
    return status


def run_on_graph(plan: DemoPlan, run_dir: Path, root: Path) -> int:
    """Start the eval graph, wait until its policy is up, run the evaluation, stop the graph; the status."""
    import rclpy
    from rclpy.action import ActionClient

    from openhelix_msgs.action import RunEvaluation
    from openhelix_ros.cli import evaluate
    from openhelix_ros.common import graph
    from openhelix_ros.common.graphs import EVAL
    from openhelix_ros.common.processes import (
        ProcessDied,
        check_alive,
        start_graph,
        stop_all,
        topic_has_publishers,
        wait_for,
    )

    names = [node.name for node in EVAL.resolve(plan.arguments, plan.extra)]
    print(f"[demo] starting {', '.join(names)} (logs in {run_dir / 'logs'})", flush=True)
    started = time.monotonic()
    processes = []
    rclpy.init()
    watcher = rclpy.create_node("openhelix_demo")
    try:
        processes = start_graph(EVAL, plan.arguments, extra=plan.extra, log_dir=run_dir / "logs", config=config_dir(root))
        client = ActionClient(watcher, RunEvaluation, "run_evaluation")
        # Model loading (System 2 embedded converts its weights once) dominates the start.
        wait_for(watcher, client.server_is_ready, 300, "the evaluator's run_evaluation action",
                 processes=processes)
        # The policy nodes announce their publishers once their models are loaded; a node that dies
        # while loading (a checkpoint that does not fit, say) stops the demo here with its log.
        policy_topics = [graph.EE_TRAJECTORY] + ([graph.GOAL_LATENT] if plan.policy == "dual" else [])
        wait_for(watcher, lambda: all(topic_has_publishers(watcher, t) for t in policy_topics), 600,
                 f"publishers of {', '.join(policy_topics)}", processes=processes)
        print(f"[demo] graph up after {time.monotonic() - started:.0f} s; running {plan.chains} chains", flush=True)
        # evaluate.evaluate owns its rclpy context; ours stays for watching the processes afterwards.
        watcher.destroy_node()
        rclpy.try_shutdown()
        status = evaluate.evaluate(plan.evaluation)
        check_alive(processes)
        return status
    except (ProcessDied, TimeoutError) as failure:
        print(f"[demo] {failure}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("[demo] interrupted; stopping the graph", flush=True)
        return 130
    finally:
        if rclpy.ok():
            watcher.destroy_node()
            rclpy.try_shutdown()
        stop_all(processes)


def run_in_process(plan: DemoPlan, run_dir: Path, root: Path) -> int:
    """The same evaluation over the graph's cores in this process; results where the evaluator writes them."""
    from openhelix_ros.evaluation.core import TimingCollector
    from openhelix_ros.evaluation.inprocess import InProcessGraph
    from openhelix_ros.evaluation.report import build_results, write_report

    started = time.time()
    graph, evaluator = InProcessGraph.from_graph(plan.arguments, plan.extra, config_dir(root))
    total = plan.evaluation.num_sequences

    def chain_done(record) -> None:
        print(f"[demo] chain {record.index + 1}/{total}: {record.completed}/{len(record.tasks)}"
              + (f" ({record.failure})" if record.failure else ""), flush=True)

    print(f"[demo] in process (no DDS): {plan.chains} chains", flush=True)
    try:
        run = graph.evaluate(plan.evaluation, on_chain=chain_done)
    except KeyboardInterrupt:
        print("[demo] interrupted", flush=True)
        return 130
    finally:
        graph.bridge.close()
    stats = graph.stats
    results = build_results(run, TimingCollector(control_rate=graph.bridge.config.control_rate),
                            run_name=plan.evaluation.run_name, started=started, status=run.status,
                            message="in process (evaluation/inprocess.py), no DDS",
                            parameters={"in_process": True, "steps": stats.steps, "plans": stats.plans,
                                        "holds": stats.holds, "steps_per_second": round(stats.steps_per_second, 2),
                                        "runs_dir": evaluator["runs_dir"]})
    write_report(results, run_dir)
    print(f"[demo] {stats.steps} steps at {stats.steps_per_second:.1f} steps/s, {stats.plans} plans, "
          f"{stats.holds} holds", flush=True)
    return 0 if run.status == "completed" else 1


def write_summary(args: argparse.Namespace, plan: DemoPlan, run_dir: Path, status: int, seconds: float) -> str:
    """demo.json and demo.md beside the evaluation's results; returns demo.md's text."""
    dual = plan.policy == "dual"
    summary = {"policy": plan.policy, "checkpoint": plan.checkpoint or None, "checkpoint_note": plan.checkpoint_note,
               "system2_model": args.system2_model if dual else None,
               "system1_model": args.system1_model if dual else None,
               "backend": args.backend, "clock_mode": "lockstep", "latent_period_steps": args.latent_period_steps,
               "waypoints_per_plan": args.waypoints_per_plan or None,
               "chains": plan.chains, "tasks": plan.tasks or None, "tasks_note": plan.tasks_note,
               "variant": args.variant, "seconds": round(seconds, 1), "exit_status": status,
               "in_process": bool(args.in_process)}
    results_file = run_dir / "results.json"
    if results_file.is_file():
        results = json.loads(results_file.read_text())
        summary["average_length"] = results.get("average_length")
        summary["success_rates"] = results.get("success_rates")
        summary["videos"] = [video["path"] for video in results.get("videos", []) if not video["error"]]
    (run_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    episodes = (f"- {plan.chains} single-subtask episodes of {', '.join(plan.tasks)} ({plan.tasks_note}), "
                f"variant {args.variant}; " if plan.tasks else f"- {plan.chains} chains, variant {args.variant}; ")
    lines = ["# openhelix demo", "",
             f"- Policy: {'System 2 + System 1' if dual else 'scripted expert'}; {plan.checkpoint_note}.",
             f"- Graph: calvin_bridge ({args.backend}, lockstep) + {'system2 + system1' if dual else 'scripted_expert'} "
             f"+ evaluator, Asy({args.latent_period_steps})" + (" (their cores in one process, no DDS)"
                                                                if args.in_process else "")
             + (f", {args.waypoints_per_plan} waypoints per plan." if args.waypoints_per_plan else "."),
             episodes + f"{summary['seconds']:.0f} s in all.",
             f"- Average length: {_two_decimals(summary.get('average_length'))}; see report.md for the tables and "
             "plots."]
    if summary.get("videos"):
        lines.append(f"- Videos of the episodes (the plan projected into the static camera): "
                     f"{', '.join(str(run_dir / path) for path in summary['videos'])}.")
    text = "\n".join(lines)
    (run_dir / "demo.md").write_text(text + "\n")
    return text
