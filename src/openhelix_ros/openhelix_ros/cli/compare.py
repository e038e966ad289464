"""``openhelix compare``: the survey's dual systems (configs/systems/) trained on the same demonstrations
with the same budget and seeds, each evaluated through the graph on the same seeded episodes, one report.

Per system, in order: ``pretrain`` (only for a system whose policy starts pre-trained: the policy alone
against the frozen System 2, shared by every system with the same two models), ``train`` (the dual
system, its two stages), ``evaluate`` (the eval graph in lockstep with the trained checkpoint, the
system's Asy(N) and System 1 settings). ``<out>/compare.json`` records each finished stage, so running
the same command again resumes; ``<out>/compare.md`` and ``compare.png`` are rewritten after every stage.

Exit status: 0 when every system was evaluated, 1 when one failed (its row names why; no score), 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

from openhelix_ros.cli.evaluate import add_protocol_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--systems", default="openhelix,lcb,dp-vla,hirt,robodual,dexvla,helix",
                        help="comma-separated system names (configs/systems/) or system files")
    parser.add_argument("--size", choices=("full", "tiny"), default="full",
                        help="full: the system files' presets (embedded MLLM, default policy); tiny: random tiny "
                             "models, to check the plumbing in minutes")
    parser.add_argument("--data", default="",
                        help="recorded demonstrations: a bag directory or a folder of bags (openhelix collect), or a "
                             "CALVIN split directory with --data-kind calvin; empty: a generated CALVIN-layout set")
    parser.add_argument("--data-kind", choices=("rosbag", "calvin", "synthetic"), default="",
                        help="default: rosbag for --data, synthetic without it")
    parser.add_argument("--trajectory", choices=("commands", "keypose", "frames"), default="commands",
                        help="rosbag: what the policy learns to publish (data.trajectory; commands: the "
                             "demonstrator's commanded targets, what made the shipped checkpoint work)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of each dual system")
    parser.add_argument("--pretrain-steps", type=int, default=-1,
                        help="steps of policy pre-training for systems that start from a pre-trained policy "
                             "(default: --steps)")
    parser.add_argument("--pretrained-policy", default="",
                        help="a System 1 (training run, checkpoint or model directory) that the systems starting "
                             "from a pre-trained policy start from, instead of pre-training one here (e.g. "
                             "checkpoints/easy6)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes per task (chains with --tasks all)")
    parser.add_argument("--tasks", default="open_drawer,close_drawer",
                        help="comma-separated CALVIN task ids (single-subtask episodes), or 'all' for CALVIN's chains")
    add_protocol_arguments(parser)
    parser.add_argument("--clock-mode", choices=("lockstep", "realtime"), default="lockstep",
                        help="lockstep: every system at its Asy(N) exactly (the figures to compare); realtime: the "
                             "simulator at 30 Hz of wall time, System 2 at the system's rate (Helix: 8 Hz; else "
                             "30/N Hz), System 1 as fast as it plans")
    parser.add_argument("--seed", type=int, default=0, help="seed of every training and of the episodes")
    parser.add_argument("--out", default="", help="default: runs/compare/")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the stages that failed in an earlier run of this comparison")


def settings_of(args: argparse.Namespace) -> dict:
    tasks = [] if args.tasks.strip() == "all" else [t.strip() for t in args.tasks.split(",") if t.strip()]
    kind = args.data_kind or ("rosbag" if args.data else "synthetic")
    return {"systems": [s.strip() for s in args.systems.split(",") if s.strip()], "size": args.size,
            "data": {"kind": kind, **({"path": args.data} if args.data else {}),
                     **({"trajectory": args.trajectory} if kind == "rosbag" else {})}, "steps": int(args.steps),
            "pretrain_steps": int(args.steps if args.pretrain_steps < 0 else args.pretrain_steps),
            "episodes": int(args.episodes), "tasks": tasks, "seed": int(args.seed),
            "batch_size": int(args.batch_size), "episode_length": int(args.episode_length),
            "protocol": args.protocol, "clock_mode": args.clock_mode,
            "pretrained_policy": str(Path(args.pretrained_policy).resolve()) if args.pretrained_policy else ""}


def run(args: argparse.Namespace) -> int:
    from openhelix_ros.common.environment import project_root
    from openhelix_ros.evaluation.comparison import ComparisonState
    from openhelix_training.systems import load_system

    settings = settings_of(args)
    if not settings["systems"]:
        print("openhelix compare: --systems names no system", file=sys.stderr)
        return 2
    if settings["steps"] < 1 or settings["episodes"] < 1:
        print("openhelix compare: --steps and --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        systems = {name: load_system(name).sized(settings["size"]) for name in settings["systems"]}
        # what each file says, so that an edited system file is a different comparison, never a resumed one
        settings["system_files"] = {name: hashlib.sha256(Path(system.source).read_bytes()).hexdigest()[:16]
                                    for name, system in systems.items()}
        if settings["tasks"]:
            from openhelix_ros.evaluation.core import task_episodes

            task_episodes(1, 0, settings["tasks"])
    except ValueError as error:
        print(f"openhelix compare: {error}", file=sys.stderr)
        return 2
    root = project_root()
    out = Path(args.out).resolve() if args.out else root / "runs" / "compare"
    try:
        state = ComparisonState.load_or_start(out, settings)
    except ValueError as error:
        print(f"openhelix compare: {error}", file=sys.stderr)
        return 2
    if args.retry_failed:
        for record in state.systems.values():
            record.stages = {stage: text for stage, text in record.stages.items() if text == "done"}
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM stops the comparison as Ctrl-C does: through the finally blocks that stop a running graph
    signal.signal(signal.SIGTERM, interrupted)
    runner = ComparisonRunner(state, systems, out, root)
    try:
        return runner.run()
    except KeyboardInterrupt:
        print("[compare] interrupted; the finished stages are kept, the same command resumes", flush=True)
        return 130


class ComparisonRunner:
    """Runs the stages a comparison still needs, writing its state and report after each."""

    def __init__(self, state, systems: dict, out: Path, root: Path) -> None:
        self.state, self.systems, self.out, self.root = state, systems, out, root

    def run(self) -> int:
        from tqdm import tqdm

        from openhelix_ros.evaluation.comparison import STAGES

        todo = [(name, stage) for name in self.state.systems for stage in STAGES
                if not self.state.systems[name].done(stage) and self._needs(name, stage)]
        self.write_report()
        bar = tqdm(total=len(todo), desc="compare", unit="stage", file=sys.stdout, dynamic_ncols=True)
        try:
            for name, stage in todo:
                record = self.state.systems[name]
                if record.failure:
                    bar.update(1)
                    continue
                bar.set_postfix_str(f"{name}: {stage}")
                started = time.monotonic()
                try:
                    getattr(self, f"_{stage}")(name, record)
                    record.stages[stage] = "done"
                except StageFailed as failure:
                    record.stages[stage] = f"failed: {failure}"
                    tqdm.write(f"[compare] {name}: {stage} failed: {failure}")
                if stage in ("pretrain", "train"):
                    record.train_seconds += time.monotonic() - started
                self.state.save(self.out)
                self.write_report()
                bar.update(1)
        finally:
            bar.close()
        failed = [n for n, r in self.state.systems.items() if r.failure]
        print(f"[compare] report: {self.out / 'compare.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""),
              flush=True)
        return 1 if failed else 0

    def _needs(self, name: str, stage: str) -> bool:
        return stage != "pretrain" or self.systems[name].system1_init == "pretrained"

    # --- stages -------------------------------------------------------------------------------------

    def _training(self) -> dict:
        return {"batch_size": self.state.settings["batch_size"], "progress": False, "num_threads": 1,
                "checkpoint_every": 0}

    def _pretrain(self, name: str, record) -> None:
        """The policy alone against this system's frozen System 2; shared across systems with the same
        System 2 preset and latent, and the same System 1 (the key names them)."""
        system, s = self.systems[name], self.state.settings
        if s.get("pretrained_policy"):
            directory = _policy_directory(Path(s["pretrained_policy"]))
            if directory is None:
                raise StageFailed(f"--pretrained-policy {s['pretrained_policy']} holds no System 1")
            record.pretrained = str(directory)
            return
        config = system.pretrain_config("", s["data"], s["pretrain_steps"], s["seed"],
                                        {**self._training(), "resume": "auto"})
        # the pre-training's whole configuration but its folder names it
        key = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
        output = self.out / "pretrained" / key
        if (directory := _policy_directory(output)) is None:
            self._train_run(dataclasses.replace(config, output_dir=str(output)))
            directory = _policy_directory(output)
        if directory is None:
            raise StageFailed(f"policy pre-training wrote no System 1 under {output}")
        record.pretrained = str(directory)

    def _train(self, name: str, record) -> None:
        system, s = self.systems[name], self.state.settings
        output = self.out / name / "train"
        config = system.train_config(output, s["data"], s["steps"], s["seed"], {**self._training(), "resume": "auto"},
                                     pretrained=record.pretrained or None)
        self._train_run(config)
        record.checkpoint = str(output)

    def _train_run(self, config) -> None:
        from openhelix_training.train import Trainer

        try:
            trainer = Trainer(config)
            trainer.run()
        except KeyboardInterrupt:
            raise
        except Exception as error:  # any failure is this system's row, never the end of the comparison
            raise StageFailed(f"training: {type(error).__name__}: {error}") from error

    def _evaluate(self, name: str, record) -> None:
        from openhelix_ros.cli.demo import DemoPlan, run_on_graph
        from openhelix_ros.evaluation.comparison import summarize
        from openhelix_ros.evaluation.core import EvaluationConfig, EvaluationError
        from openhelix_ros.evaluation.report import load_results

        system, s = self.systems[name], self.state.settings
        runs = self.out / name
        clock = s.get("clock_mode", "lockstep")
        arguments = {"backend": "embedded", "clock_mode": clock,
                     "latent_period_steps": str(system.latent_period_steps if clock == "lockstep" else 0),
                     "policy": "dual", "checkpoint": record.checkpoint, "runs_dir": str(runs), "video_chains": "0"}
        nodes = system.node_overrides(clock)
        episodes = s["episodes"] * max(1, len(s["tasks"]))
        try:
            evaluation = EvaluationConfig(num_sequences=episodes, episode_length=s["episode_length"], seed=s["seed"],
                                          run_name="eval", tasks=tuple(s["tasks"]), backend="embedded",
                                          protocol=s["protocol"]).validate()
        except EvaluationError as error:
            raise StageFailed(str(error)) from error
        plan = DemoPlan("dual", record.checkpoint, f"{name}'s checkpoint", arguments,
                        {"calvin_bridge": {"seed": s["seed"]}, **nodes}, list(s["tasks"]),
                        ", ".join(s["tasks"]) or "CALVIN chains", episodes, evaluation)
        try:
            status = run_on_graph(plan, runs / "eval", self.root)
        except KeyboardInterrupt:
            raise
        except Exception as error:
            raise StageFailed(f"the graph: {type(error).__name__}: {error}") from error
        if status == 130:
            raise KeyboardInterrupt("the evaluation was interrupted")  # not this system's failure: stop, resumable
        results_path = runs / "eval" / "results.json"
        if status != 0 or not results_path.is_file():
            raise StageFailed(f"the evaluation through the graph ended with status {status} (logs: {runs / 'eval'})")
        results = load_results(results_path)
        if results.get("status") != "completed":
            raise StageFailed(f"the evaluation did not complete: {results.get('status')}: {results.get('message')}")
        record.results = str(results_path)
        record.summary = summarize(results)

    # --- report -------------------------------------------------------------------------------------

    def write_report(self) -> None:
        from openhelix_ros.evaluation.comparison import markdown, plot

        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "compare.md").write_text(markdown(self.state, self.systems)
                                             + "\n![success rates](compare.png)\n")
        plot(self.state, self.out / "compare.png")


def _policy_directory(output: Path) -> Path | None:
    """The System 1 model directory of a finished training run under ``output``, else None."""
    from openhelix_training.checkpoint import SYSTEM1_MODEL_TYPE, CheckpointError, find_model_directory

    try:
        return find_model_directory(output, SYSTEM1_MODEL_TYPE)
    except CheckpointError:
        return None  # nothing trained there yet


class StageFailed(RuntimeError):
    """A stage of one system that could not be done; the comparison goes on with the others."""
