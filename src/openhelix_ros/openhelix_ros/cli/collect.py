"""``openhelix collect``: scripted or tele-operated demonstrations through the ROS graph, recorded as
rosbag2 bags.

Starts three node processes, as a launch file would: ``calvin_bridge`` (lockstep, both cameras
rendered, ``points`` on every step so that every recorded frame has its cloud), the demonstrator
(``scripted_expert``, or with ``--teleop`` the ``teleop`` node, which a person drives: ``keyboard`` from
this terminal, ``topic`` from any device publishing ``teleop/twist``) and, for each episode, a
``recorder`` (config/recorder.yaml's topics) writing one MCAP bag. An episode
is a start state and one or more subtasks: CALVIN evaluation chains from ``sample_chains`` (the first
``--subtasks`` of each), or, with ``--tasks``, one listed task from a random valid start state for it.

Per episode: reset the scene (the expert drops its previous task when it sees the reset, so the world
stands still), start the recorder and wait until it listens, then per subtask publish the instruction
and call ``check_tasks`` after every step until the oracle says done or ``--episode-length`` steps have
passed; a chain stops at its first failure. A person at the keyboard may also give up on an episode (Enter:
recorded as failed) or stop collecting (q). Then the recorder is stopped (SIGINT: the bag is closed)
before the next reset, so no bag holds a frame of another episode.

Output under ``runs/<name>/``: ``bags/episode_NNNN/`` (successful episodes; failed ones under
``bags/failed/``), ``logs/`` (one log per node process), with ``--videos`` ``videos/episode_NNNN.mp4``
(recording/video.py, filmed from each closed bag in a background thread) and ``summary.json``. openhelix_training reads
the bags (``openhelix_training.data.rosbag``): each instruction starts a demonstration segment.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from openhelix_ros.common.environment import project_root
from openhelix_ros.sim.backends import BACKENDS

RECORDER_TOPICS_FALLBACK = ("camera/static/image_raw", "camera/static/depth", "camera/static/camera_info",
                            "camera/gripper/image_raw", "camera/gripper/depth", "camera/gripper/camera_info",
                            "camera/static/pose", "camera/gripper/pose",
                            "points", "joint_states", "ee_pose", "scene_state", "instruction", "ee_trajectory")


CALVIN_EPISODE_LENGTH = 360  # env steps per subtask, as CALVIN's evaluation allows a policy
TELEOP_EPISODE_LENGTH = 1800  # one minute at 30 Hz: people are slower than the expert


@dataclass
class EpisodeSpec:
    """What one episode asks for: a symbolic start condition, its concrete state, and the subtasks."""

    index: int
    condition: dict
    tasks: list[str]
    robot_obs: list[float]
    scene_obs: list[float]


@dataclass
class EpisodeResult:
    index: int
    tasks: list[str]
    completed: int = 0
    steps: list[int] = field(default_factory=list)  # env steps each attempted subtask took
    bag: str = ""
    seconds: float = 0.0
    video: dict = field(default_factory=dict)  # what film_bag wrote of the bag, once it has (empty: none)

    @property
    def success(self) -> bool:
        return self.completed == len(self.tasks)


def plan_episodes(episodes: int, seed: int = 0, subtasks: int = 1, tasks: list[str] | None = None,
                  backend: str = "embedded") -> list[EpisodeSpec]:
    """The episodes to collect, deterministic in ``seed`` (ROS-free).

    Without ``tasks``: CALVIN chains (``sample_chains(episodes, seed)``), the first ``subtasks`` of each.
    With ``tasks``: episode i demonstrates ``tasks[i % len(tasks)]`` from a random valid start condition
    for it. Start states are the ``backend``'s for each condition (sim/backends.py). Raises ValueError for unknown tasks or tasks no start condition allows (those that begin with
    a block in the hand, e.g. ``place_in_drawer``: collect them as part of chains).
    """
    from openhelix_ros.sim.backends import start_state
    from openhelix_ros.sim.protocol import conditions_for_task, sample_chains
    from openhelix_ros.sim.tasks import check_task_names

    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if not 1 <= subtasks <= 5:
        raise ValueError(f"--subtasks must be between 1 and 5, got {subtasks}")
    plans: list[tuple[dict, list[str]]] = []
    if tasks:
        check_task_names(tasks)
        conditions = {task: conditions_for_task(task) for task in tasks}
        impossible = [task for task, found in conditions.items() if not found]
        if impossible:
            raise ValueError(f"no start state allows {', '.join(impossible)} directly (they need a block in "
                             f"the hand); collect them within chains (leave out --tasks)")
        rng = np.random.default_rng([seed, 1])
        for i in range(episodes):
            task = tasks[i % len(tasks)]
            options = conditions[task]
            plans.append((dict(options[int(rng.integers(len(options)))]), [task]))
    else:
        plans = [(condition, chain[:subtasks]) for condition, chain in sample_chains(episodes, seed)]
    specs = []
    for index, (condition, chain) in enumerate(plans):
        robot_obs, scene_obs = start_state(backend, condition, np.random.default_rng([seed, 2, index]))
        specs.append(EpisodeSpec(index, condition, list(chain), robot_obs.tolist(), scene_obs.tolist()))
    return specs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="collect", help="results go to runs/<name>/ (default: collect)")
    parser.add_argument("--episodes", type=int, default=5, help="number of episodes (default 5)")
    parser.add_argument("--subtasks", type=int, default=1,
                        help="subtasks per episode, from a CALVIN chain (1-5, default 1)")
    parser.add_argument("--tasks", default="",
                        help="comma-separated CALVIN task ids to demonstrate instead of chains")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes' start states")
    parser.add_argument("--episode-length", type=int, default=None,
                        help="env steps allowed per subtask before it counts as failed (default: CALVIN's "
                             "360; 1800, one minute, with --teleop)")
    parser.add_argument("--backend", choices=BACKENDS, default="embedded",
                        help="simulator behind the bridge: embedded (the play table) or calvin (calvin_env, "
                             "installed by hand; the scripted expert demonstrates on the play table only)")
    parser.add_argument("--teleop", choices=("keyboard", "topic"), default=None,
                        help="a person demonstrates instead of the scripted expert: 'keyboard' from this "
                             "terminal, 'topic' from any device publishing geometry_msgs/Twist on teleop/twist")
    parser.add_argument("--no-render", action="store_true",
                        help="state topics only (fast; the bags then have no images or clouds, which "
                             "System 1 training needs)")
    parser.add_argument("--instructions", choices=("evaluation", "training", "enriched"), default="training",
                        help="which language set the instruction text comes from (default training)")
    parser.add_argument("--dynamic", default="", help="CALVIN-D block motion: left|forward|diagonal|circle")
    parser.add_argument("--keep-failed", action="store_true",
                        help="keep failed episodes' bags under bags/failed/ (default: delete them)")
    parser.add_argument("--runs-dir", default="", help="where runs/ is (default: the project's runs/)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the nodes to come up (default 60)")
    parser.add_argument("--tail-steps", type=int, default=5,
                        help="steps recorded after the last subtask succeeded (default 5)")
    parser.add_argument("--drain", type=float, default=2.0,
                        help="seconds the recorder gets to catch up before it is stopped (default 2)")
    parser.add_argument("--videos", type=_video_count, default=0, metavar="N|all",
                        help="write an MP4 of the first N kept bags (or all) to runs/<name>/videos/, as the "
                             "evaluator films its chains; made from each closed bag in a background thread, "
                             "never on the lockstep path (default 0: none)")


def _video_count(text: str) -> int:
    """--videos: a count >= 0, or 'all' (-1)."""
    if text == "all":
        return -1
    try:
        count = int(text)
    except ValueError:
        count = -2
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be a count >= 0 or 'all', got {text!r}")
    return count


def _instruction_text(task: str, language: str, rng: np.random.Generator) -> str:
    from openhelix_ros.sim import language as lang

    if language == "evaluation":
        return lang.evaluation_instruction(task)
    options = (lang.TRAINING if language == "training" else lang.ENRICHED)[task]
    options = [options] if isinstance(options, str) else list(options)
    return str(options[int(rng.integers(len(options)))])


def _recorded_steps(bag: Path) -> int:
    """The last SceneState.step a bag holds (-1 when none or unreadable)."""
    from rosbags.rosbag2 import Reader

    from openhelix_ros.recording.core import build_typestore

    try:
        store = build_typestore()
        last = -1
        with Reader(bag) as reader:
            connections = [c for c in reader.connections if c.topic.endswith("/scene_state")]
            # (rosbags reads every connection when given none)
            for connection, _, raw in (reader.messages(connections=connections) if connections else ()):
                last = max(last, int(store.deserialize_cdr(raw, connection.msgtype).step))
        return last
    except Exception:  # rosbags raises several unrelated types for a broken bag
        return -1


def _recorder_topics(root: Path) -> list[str]:
    from openhelix_ros.common.graphs import parameter_file_values

    try:
        return list(parameter_file_values(root / "config" / "recorder.yaml")["topics"])
    except (OSError, KeyError, TypeError):
        return list(RECORDER_TOPICS_FALLBACK)


def run(args: argparse.Namespace) -> int:
    try:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        specs = plan_episodes(args.episodes, args.seed, args.subtasks, tasks or None, args.backend)
        if args.episode_length is None:
            args.episode_length = TELEOP_EPISODE_LENGTH if args.teleop else CALVIN_EPISODE_LENGTH
        if args.episode_length < 1:
            raise ValueError(f"--episode-length must be >= 1, got {args.episode_length}")
        if args.dynamic:
            from openhelix_ros.sim import DYNAMIC_MODES

            if args.dynamic not in DYNAMIC_MODES:
                raise ValueError(f"--dynamic must be one of {DYNAMIC_MODES}, got {args.dynamic!r}")
    except ValueError as error:
        print(f"openhelix collect: {error}", file=sys.stderr)
        return 2
    root = project_root()
    run_dir = Path(args.runs_dir or root / "runs") / args.name
    return Collector(args, specs, run_dir, root).run()


class Collector:
    """The driver: a ROS node of its own that resets, instructs, checks and starts/stops recorders."""

    def __init__(self, args: argparse.Namespace, specs: list[EpisodeSpec], run_dir: Path, root: Path):
        self.args, self.specs, self.run_dir, self.root = args, specs, run_dir, root
        self.bag_dir = run_dir / "bags"
        self.log_dir = run_dir / "logs"
        self.video_dir = run_dir / "videos"
        self.rng = np.random.default_rng([args.seed, 3])

    def run(self) -> int:
        from openhelix_ros.cli.teleop import TerminalKeys

        if self.bag_dir.exists() and any(self.bag_dir.iterdir()):
            print(f"openhelix collect: {self.bag_dir} already holds bags; choose another --name or remove it",
                  file=sys.stderr)
            return 2
        started = time.monotonic()
        with contextlib.ExitStack() as terminal:
            keys = None
            if self.args.teleop == "keyboard":
                try:  # before any process starts, so a refusal costs nothing
                    keys = terminal.enter_context(TerminalKeys())
                except RuntimeError as error:
                    print(f"openhelix collect: {error}", file=sys.stderr)
                    return 2
            results, status = self._collect(keys)
        # the terminal is back in its own mode before the summary is printed
        summary = self._summary(results, time.monotonic() - started, status)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"collect: {summary['successful_episodes']}/{len(self.specs)} episodes recorded, "
              f"{summary['total_steps']} steps in {summary['seconds']:.0f} s "
              f"({summary['steps_per_second']:.1f} steps/s); summary in {self.run_dir / 'summary.json'}",
              flush=True)
        return status

    def _collect(self, keys) -> tuple[list[EpisodeResult], int]:
        """Start the nodes, record every episode, stop the nodes; keys: TerminalKeys in cbreak mode or None."""
        self.bag_dir.mkdir(parents=True, exist_ok=True)
        session = CollectSession(self, keys)
        try:
            session.start()
            return session.record_all(), 0
        except (TimeoutError, RuntimeError) as error:
            print(f"openhelix collect: {error}", file=sys.stderr, flush=True)
            return session.results, 1
        finally:
            session.close()

    def _summary(self, results: list[EpisodeResult], seconds: float, status: int) -> dict:
        total_steps = sum(sum(r.steps) for r in results)
        return {
            "command": "openhelix collect",
            "status": "ok" if status == 0 else "error",
            "arguments": {k: v for k, v in vars(self.args).items()},
            "episodes_requested": len(self.specs),
            "successful_episodes": sum(r.success for r in results),
            "bags": [r.bag for r in results if r.success],
            "total_steps": total_steps,
            "seconds": seconds,
            "steps_per_second": total_steps / seconds if seconds > 0 else 0.0,
            "episodes": [{**asdict(r), "success": r.success,
                          "condition": self.specs[r.index].condition} for r in results],
            "videos": [r.video for r in results if r.video],
            "logs": str(self.log_dir),
        }


class CollectSession:
    """The graph of record.launch.py plus this process's own ROS node, which drives the episodes.

    The episode loop is the evaluator's (``evaluation.core.EvaluationRun``): reset, one instruction per
    subtask, ``check_tasks`` after every step, a chain ends at its first failure. What collecting adds
    happens around it: a recorder starts before each episode's first instruction and stops (SIGINT:
    its bag is closed) once the episode ended and a few tail steps are recorded, before the next reset,
    so no bag holds a frame of another episode; a person at the keyboard may end an episode.
    """

    def __init__(self, collector: Collector, keys) -> None:
        self.collector, self.args = collector, collector.args
        self.results: list[EpisodeResult] = []
        self.recorder = None
        self.processes: list = []
        self.node = None
        self.operator = None
        self.quitting = False
        self._keys = keys
        self._sequence = 0
        self._checked_step = 0  # the step of the newest state the oracle saw
        self._episode_started = 0.0
        self._bag: Path | None = None
        self._films: list = []  # (result, future of film_bag) of each bag being filmed
        self._filming = None  # the one background thread that films closed bags, started with the first

    def start(self) -> None:
        """Start the graph's nodes (all but the recorder) and this process's node."""
        import rclpy
        from rclpy.node import Node

        from openhelix_msgs.msg import Instruction, SceneState
        from openhelix_msgs.srv import CheckTasks, ResetScene
        from openhelix_ros.common import graph
        from openhelix_ros.common.graphs import RECORD
        from openhelix_ros.common.node_utils import INSTRUCTION_PUBLISHER_QOS, SCENE_STATE_QOS
        from openhelix_ros.common.processes import start_node

        collector = self.collector
        # The graph of record.launch.py (openhelix_ros/common/graphs.py); the recorder is started per episode.
        # The teleop node answers every lockstep observation at the control rate, so the world runs in
        # real time for the person; it does not read instructions (the person does), the expert does.
        nodes = RECORD.resolve({"policy": "teleop" if self.args.teleop else "expert", "backend": self.args.backend},
                               extra={"calvin_bridge": {"render": not self.args.no_render, "seed": int(self.args.seed),
                                                        "dynamic": self.args.dynamic}})
        self.recorder_node = next(node for node in nodes if node.name == "recorder")
        self.demonstrator = next(node.name for node in nodes if node.name in ("teleop", "scripted_expert"))
        self.config_dir = collector.root / "config"
        self.instruction_readers = 1 if self.args.teleop else 2
        self.processes = [start_node(node, log_dir=collector.log_dir, config=self.config_dir)
                          for node in nodes if node is not self.recorder_node]
        rclpy.init()
        self.node = Node("openhelix_collect")
        self.latest: list[SceneState] = []  # the newest scene states, newest last
        self.node.create_subscription(SceneState, graph.SCENE_STATE, self._on_scene_state, SCENE_STATE_QOS)
        self._instruction_type, self._instruction_qos = Instruction, INSTRUCTION_PUBLISHER_QOS
        self.instructions = self.node.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
        self.reset_client = self.node.create_client(ResetScene, graph.RESET_SCENE)
        self.check_client = self.node.create_client(CheckTasks, graph.CHECK_TASKS)
        self.topics = _recorder_topics(collector.root)

    def _on_scene_state(self, message) -> None:
        self.latest.append(message)
        del self.latest[:-4]

    def wait_for(self, predicate, timeout: float, what: str, with_recorder: bool = False) -> None:
        from openhelix_ros.common.processes import wait_for

        processes = [*self.processes, self.recorder] if with_recorder and self.recorder else self.processes
        wait_for(self.node, predicate, timeout, what, processes)

    def call(self, client, request):
        future = client.call_async(request)
        self.wait_for(future.done, 60.0, f"an answer from {client.srv_name}")
        return future.result()

    def close(self) -> None:
        import rclpy

        from openhelix_ros.common.processes import stop_all

        stop_all([p for p in (self.recorder, *self.processes) if p is not None])
        if self.node is not None:
            self.node.destroy_node()
        rclpy.try_shutdown()
        self._finish_videos()

    def _film(self, result: EpisodeResult, record) -> None:
        """Film a kept bag in the background thread (the next episode goes on meanwhile)."""
        from concurrent.futures import ThreadPoolExecutor

        from openhelix_ros.recording.video import film_bag

        wanted = self.args.videos
        if not result.bag or wanted == 0 or (wanted > 0 and len(self._films) >= wanted):
            return
        if self._filming is None:
            self._filming = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect video")
        output = self.collector.video_dir / f"{Path(result.bag).name}.mp4"
        future = self._filming.submit(film_bag, result.bag, output, tasks=list(record.tasks),
                                      completed=result.completed, episode=record.index,
                                      episodes=len(self.collector.specs))
        self._films.append((result, future))

    def _finish_videos(self) -> None:
        """Wait for every video; each result says what was written, or why not (also printed)."""
        for result, future in self._films:
            try:
                summary = future.result()
            except Exception as error:  # a bag the reader refuses, a dead encoder: the bag itself is kept
                result.video = {"path": "", "error": f"{type(error).__name__}: {error}"}
            else:
                result.video = {"path": str(summary.path), "frames": summary.frames, "dropped": summary.dropped,
                                "encode_seconds": summary.encode_seconds, "error": summary.error}
            if result.video["error"]:
                print(f"collect: no video of {result.bag}: {result.video['error']}", flush=True)
            else:
                print(f"collect: video {result.video['path']} ({result.video['frames']} frames)", flush=True)
        self._films.clear()
        if self._filming is not None:
            self._filming.shutdown()
            self._filming = None

    # ----- the episodes -----------------------------------------------------------------------------

    def record_all(self) -> list[EpisodeResult]:
        self._wait_for_graph()
        run = self._episode_run()
        pending = collections.deque(run.start(time.monotonic()))
        while pending or not run.finished:  # the last chain's ChainFinished comes with RunFinished
            if pending:
                pending.extend(self._carry_out(pending.popleft(), run))
                continue
            if self.operator is not None:
                request = self.operator.poll()
                self.quitting |= request.quit
                if request.end_episode or request.quit:
                    print("collect: the operator ended the episode", flush=True)
                    pending.extend(run.give_up(time.monotonic(), "ended by the operator"))
                    continue
            # After every step: the oracle compares the subtask's start state with now.
            subtask = run.current_subtask
            self.wait_for(lambda: bool(self.latest) and self.latest[-1].step > self._checked_step, 30.0,
                          f"the next step of {subtask.task if subtask else 'the episode'}")
            pending.extend(run.on_scene_state(time.monotonic(), int(self.latest[-1].step)))
        return self.results

    def _wait_for_graph(self) -> None:
        from openhelix_ros.cli.teleop import KeyboardOperator
        from openhelix_ros.common import graph
        from openhelix_ros.common.processes import subscriber_nodes
        from openhelix_ros.teleop.core import KEYBOARD_HELP

        print(f"collect: starting the bridge and the {self.demonstrator} (logs in {self.collector.log_dir})",
              flush=True)
        self.wait_for(lambda: self.reset_client.service_is_ready() and self.check_client.service_is_ready()
                      and len(subscriber_nodes(self.node, graph.INSTRUCTION)) >= self.instruction_readers,
                      self.args.timeout, f"calvin_bridge's services and the {self.demonstrator}")
        if self._keys is not None:
            self.operator = KeyboardOperator(self.node, self._keys)
            print(f"collect: drive with the keyboard: {KEYBOARD_HELP}", flush=True)
        elif self.args.teleop == "topic":
            print(f"collect: drive with any geometry_msgs/Twist on {graph.TELEOP_TWIST} and std_msgs/Bool "
                  f"on {graph.TELEOP_GRIPPER} (true closes)", flush=True)

    def _episode_run(self):
        from openhelix_ros.evaluation.core import Episode, EvaluationConfig, EvaluationRun

        specs = self.collector.specs
        config = EvaluationConfig(num_sequences=len(specs), episode_length=self.args.episode_length,
                                  seed=self.args.seed, clock_mode="lockstep")
        # No reset seed: the start scene is the episode's own, and CALVIN-D's motion is the bridge's.
        episodes = [Episode(spec.condition, spec.tasks, spec.robot_obs, spec.scene_obs, None) for spec in specs]
        rng = self.collector.rng
        return EvaluationRun(config, episodes=episodes,
                             instruction=lambda chain, position, task: _instruction_text(task, self.args.instructions,
                                                                                         rng))

    def _carry_out(self, command, run) -> list:
        """Carry out one command of the episode loop; returns the loop's follow-up commands. Once the run
        is over (the operator quit), only its RunFinished is left to take: the next chain's reset, issued
        with the ChainFinished before the quit, is not carried out."""
        from openhelix_msgs.srv import CheckTasks, ResetScene
        from openhelix_ros.evaluation.core import ChainFinished, PublishInstruction, RunFinished
        from openhelix_ros.evaluation.core import CheckTasks as CheckCommand
        from openhelix_ros.evaluation.core import ResetScene as ResetCommand

        if run.finished and not isinstance(command, (ChainFinished, RunFinished)):
            return []
        if isinstance(command, ResetCommand):
            self._episode_started = time.monotonic()
            answer = self.call(self.reset_client, ResetScene.Request(robot_obs=command.robot_obs,
                                                                     scene_obs=command.scene_obs))
            if not answer.success:
                print(f"collect: episode {command.chain_index}: reset refused ({answer.message}); skipped",
                      flush=True)
            self._checked_step = int(answer.state.step)
            return run.on_reset_done(time.monotonic(), bool(answer.success), answer.state, answer.message,
                                     step=int(answer.state.step))
        if isinstance(command, PublishInstruction):
            if command.subtask_index == 0:
                self._start_recording(command.chain_index)
            self._publish_instruction(command)
            return []
        if isinstance(command, CheckCommand):
            response = self.call(self.check_client, CheckTasks.Request(tasks=list(command.tasks),
                                                                       start_state=command.start_state))
            if not response.success:
                raise RuntimeError(f"check_tasks failed: {response.message}")
            state = response.current_state
            self._checked_step = max(self._checked_step, int(state.step))
            return run.on_check_result(time.monotonic(), True, list(response.completed), state, int(state.step))
        if isinstance(command, ChainFinished):
            self._finish_episode(command.record)
            if self.quitting:
                print("collect: stopped by the operator", flush=True)
                return run.cancel(time.monotonic())
            return []
        if isinstance(command, RunFinished):
            return []
        raise TypeError(f"unknown command {command!r}")

    def _start_recording(self, index: int) -> None:
        """A recorder for episode ``index``, listening before its first instruction goes out."""
        from openhelix_ros.common import graph
        from openhelix_ros.common.processes import matched_reader_nodes, start_node, topic_has_subscribers

        self._bag = self.collector.bag_dir / f"episode_{index:04d}"
        # A fresh instruction publisher per episode: the old one, latched, still holds the previous
        # episode's instruction, which the new recorder (a late joiner) would record first.
        self.node.destroy_publisher(self.instructions)
        self.instructions = self.node.create_publisher(self._instruction_type, graph.INSTRUCTION,
                                                       self._instruction_qos)
        self.recorder = start_node(self.recorder_node, log_dir=self.collector.log_dir, config=self.config_dir,
                                   extra={"output": str(self._bag), "topics": self.topics},
                                   label=f"recorder_{index:04d}")
        wanted = [t for t in self.topics if self.node.count_publishers(t) > 0 or t == graph.INSTRUCTION]
        self.wait_for(lambda: all(topic_has_subscribers(self.node, t, "recorder") for t in wanted),
                      self.args.timeout, "the recorder to subscribe", with_recorder=True)
        # The recorder reads volatile (it must not record the previous episode's instruction), so every
        # reader must have matched the new publisher (not merely be visible in the graph) before the
        # instruction goes out: the bridge, the expert and the recorder, each with all its subscriptions.
        self.wait_for(lambda: matched_reader_nodes(self.node, self.instructions, graph.INSTRUCTION)
                      >= self.instruction_readers + 1,
                      self.args.timeout, "the instruction's readers to match", with_recorder=True)
        if self.operator is not None:
            self.operator.new_episode()
        # The world stands still until the first instruction (the expert dropped its task at the
        # reset), so everything received so far is the reset's observation or older: forget it,
        # lest a late scene state of the previous episode be taken for a step of this one.
        self.latest.clear()

    def _publish_instruction(self, command) -> None:
        self._sequence += 1
        message = self._instruction_type(text=command.text, task=command.task, sequence=self._sequence)
        message.header.stamp = self.node.get_clock().now().to_msg()
        self.instructions.publish(message)
        if self.args.teleop:
            print(f"collect: episode {command.chain_index + 1}/{len(self.collector.specs)}: {command.text!r} "
                  f"({command.task}); {self.args.episode_length} steps", flush=True)

    def _finish_episode(self, record) -> None:
        """The episode ended: record the tail, stop the recorder, keep or drop the bag, count the result."""
        from openhelix_ros.common.processes import stop_all

        result = EpisodeResult(record.index, list(record.tasks), completed=record.completed,
                               steps=[subtask.steps for subtask in record.subtasks])
        if self.recorder is None:  # the reset was refused: nothing was recorded
            self.results.append(result)
            return
        # The recorder writes behind the live stream: let the world run a few steps more and the
        # recorder catch up before stopping it, then check that the bag holds the whole episode.
        last_step = int(self.latest[-1].step) if self.latest else self._checked_step
        end_step = last_step + self.args.tail_steps
        self.wait_for(lambda: bool(self.latest) and self.latest[-1].step >= end_step, 30.0, "the tail steps")
        drain_until = time.monotonic() + self.args.drain
        self.wait_for(lambda: time.monotonic() > drain_until, self.args.drain + 5, "the drain")
        stop_all([self.recorder])
        self.recorder = None
        recorded = _recorded_steps(self._bag)
        if result.completed and recorded < last_step:
            print(f"collect: episode {record.index}: the bag ends at step {recorded} before the "
                  f"demonstration did; counted as failed (raise --drain)", flush=True)
            result.completed = 0
        result.seconds = time.monotonic() - self._episode_started
        result.bag = self._keep_or_drop(self._bag, result.success)
        self.results.append(result)
        self._film(result, record)
        print(f"collect: episode {record.index + 1}/{len(self.collector.specs)}: {' -> '.join(record.tasks)}: "
              f"{result.completed}/{len(record.tasks)} done in {sum(result.steps)} steps "
              f"({result.seconds:.1f} s){' -> ' + result.bag if result.bag else ''}", flush=True)

    def _keep_or_drop(self, bag: Path, success: bool) -> str:
        """Where the episode's bag ends up ("" when it is deleted)."""
        if success:
            return str(bag)
        if self.args.keep_failed:
            failed = self.collector.bag_dir / "failed" / bag.name
            failed.parent.mkdir(exist_ok=True)
            shutil.move(str(bag), failed)
            return str(failed)
        shutil.rmtree(bag, ignore_errors=True)
        return ""
