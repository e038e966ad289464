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
``bags/failed/``), ``logs/`` (one log per node process) and ``summary.json``. openhelix_training reads
the bags (``openhelix_training.data.rosbag``): each instruction starts a demonstration segment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from openhelix_ros.common.environment import project_root

RECORDER_TOPICS_FALLBACK = ("camera/static/image_raw", "camera/static/depth", "camera/static/camera_info",
                            "camera/gripper/image_raw", "camera/gripper/depth", "camera/gripper/camera_info",
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

    @property
    def success(self) -> bool:
        return self.completed == len(self.tasks)


def plan_episodes(episodes: int, seed: int = 0, subtasks: int = 1, tasks: list[str] | None = None) -> list[EpisodeSpec]:
    """The episodes to collect, deterministic in ``seed`` (ROS-free).

    Without ``tasks``: CALVIN chains (``sample_chains(episodes, seed)``), the first ``subtasks`` of each.
    With ``tasks``: episode i demonstrates ``tasks[i % len(tasks)]`` from a random valid start condition
    for it. Raises ValueError for unknown tasks or tasks no start condition allows (those that begin with
    a block in the hand, e.g. ``place_in_drawer``: collect them as part of chains).
    """
    from openhelix_ros.sim.protocol import conditions_for_task, sample_chains, state_for_condition
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
        robot_obs, scene_obs = state_for_condition(condition, np.random.default_rng([seed, 2, index]))
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
            for connection, _, raw in reader.messages(connections=connections):
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
        specs = plan_episodes(args.episodes, args.seed, args.subtasks, tasks or None)
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
        import rclpy
        from rclpy.node import Node

        from openhelix_msgs.msg import Instruction, SceneState
        from openhelix_msgs.srv import CheckTasks, ResetScene
        from openhelix_ros.cli.teleop import KeyboardOperator
        from openhelix_ros.common import graph
        from openhelix_ros.common.graphs import RECORD
        from openhelix_ros.common.node_utils import INSTRUCTION_PUBLISHER_QOS, SCENE_STATE_QOS
        from openhelix_ros.common.processes import (
            NodeProcess,
            start_node,
            stop_all,
            topic_has_subscribers,
            wait_for,
        )
        from openhelix_ros.teleop.core import KEYBOARD_HELP

        self.bag_dir.mkdir(parents=True, exist_ok=True)
        # The graph of record.launch.py (openhelix_ros/common/graphs.py); the recorder is started per episode.
        # The teleop node answers every lockstep observation at the control rate, so the world runs in
        # real time for the person; it does not read instructions (the person does), the expert does.
        nodes = RECORD.resolve({"policy": "teleop" if self.args.teleop else "expert"},
                               extra={"calvin_bridge": {"render": not self.args.no_render, "seed": int(self.args.seed),
                                                        "dynamic": self.args.dynamic}})
        recorder_node = next(node for node in nodes if node.name == "recorder")
        demonstrator = next(node.name for node in nodes if node.name in ("teleop", "scripted_expert"))
        config = self.root / "config"
        processes = [start_node(node, log_dir=self.log_dir, config=config) for node in nodes if node is not recorder_node]
        instruction_readers = 1 if self.args.teleop else 2
        recorder: NodeProcess | None = None
        rclpy.init()
        node = Node("openhelix_collect")
        results: list[EpisodeResult] = []
        status = 0
        operator: KeyboardOperator | None = None
        quitting = False
        try:
            latest: list[SceneState] = []  # the newest scene states, newest last

            def on_scene_state(message: SceneState) -> None:
                latest.append(message)
                del latest[:-4]

            node.create_subscription(SceneState, graph.SCENE_STATE, on_scene_state, SCENE_STATE_QOS)
            instructions = node.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
            reset = node.create_client(ResetScene, graph.RESET_SCENE)
            check = node.create_client(CheckTasks, graph.CHECK_TASKS)
            print(f"collect: starting the bridge and the {demonstrator} (logs in {self.log_dir})", flush=True)
            wait_for(node, lambda: reset.service_is_ready() and check.service_is_ready()
                     and node.count_subscribers(graph.INSTRUCTION) >= instruction_readers, self.args.timeout,
                     f"calvin_bridge's services and the {demonstrator}", processes)
            if keys is not None:
                operator = KeyboardOperator(node, keys)
                print(f"collect: drive with the keyboard: {KEYBOARD_HELP}", flush=True)
            elif self.args.teleop == "topic":
                print(f"collect: drive with any geometry_msgs/Twist on {graph.TELEOP_TWIST} and std_msgs/Bool "
                      f"on {graph.TELEOP_GRIPPER} (true closes)", flush=True)
            topics = _recorder_topics(self.root)
            sequence = 0

            def call(client, request):
                future = client.call_async(request)
                wait_for(node, future.done, 60.0, f"an answer from {client.srv_name}", processes)
                return future.result()

            for spec in self.specs:
                episode_started = time.monotonic()
                result = EpisodeResult(spec.index, spec.tasks)
                answer = call(reset, ResetScene.Request(robot_obs=spec.robot_obs, scene_obs=spec.scene_obs))
                if not answer.success:
                    print(f"collect: episode {spec.index}: reset refused ({answer.message}); skipped", flush=True)
                    results.append(result)
                    continue
                bag = self.bag_dir / f"episode_{spec.index:04d}"
                # A fresh instruction publisher per episode: the old one, latched, still holds the previous
                # episode's instruction, which the new recorder (a late joiner) would record first.
                node.destroy_publisher(instructions)
                instructions = node.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
                recorder = start_node(recorder_node, log_dir=self.log_dir, config=config,
                                      extra={"output": str(bag), "topics": topics},
                                      label=f"recorder_{spec.index:04d}")
                wanted = [t for t in topics if node.count_publishers(t) > 0 or t == graph.INSTRUCTION]
                wait_for(node, lambda w=wanted: all(topic_has_subscribers(node, t, "recorder") for t in w),
                         self.args.timeout, "the recorder to subscribe", [*processes, recorder])
                # The bridge and the expert read instructions volatile: they must have matched the new
                # publisher (not merely be visible in the graph) before the instruction goes out.
                wait_for(node, lambda p=instructions: p.get_subscription_count() >= instruction_readers + 1,
                         self.args.timeout, "the instruction's readers to match", [*processes, recorder])
                start_state = answer.state
                if operator is not None:
                    operator.new_episode()
                # The world stands still until the first instruction (the expert dropped its task at the
                # reset), so everything received so far is the reset's observation or older: forget it,
                # lest a late scene state of the previous episode be taken for a step of this one.
                latest.clear()
                for task in spec.tasks:
                    sequence += 1
                    text = _instruction_text(task, self.args.instructions, self.rng)
                    message = Instruction(text=text, task=task, sequence=sequence)
                    message.header.stamp = node.get_clock().now().to_msg()
                    instructions.publish(message)
                    if self.args.teleop:
                        print(f"collect: episode {spec.index + 1}/{len(self.specs)}: {text!r} ({task}); "
                              f"{self.args.episode_length} steps", flush=True)
                    first_step = checked = int(start_state.step)
                    done = False
                    while not done:
                        # After every step: the oracle compares the subtask's start state with now.
                        wait_for(node, lambda c=checked: bool(latest) and latest[-1].step > c, 30.0,
                                 f"the next step of {task}", processes)
                        state = latest[-1]
                        checked = int(state.step)
                        response = call(check, CheckTasks.Request(tasks=[task], start_state=start_state))
                        if not response.success:
                            raise RuntimeError(f"check_tasks failed: {response.message}")
                        done = task in response.completed
                        if checked - first_step >= self.args.episode_length:
                            break
                        if operator is not None and not done:
                            request = operator.poll()
                            quitting |= request.quit
                            if request.end_episode or request.quit:
                                print("collect: the operator ended the episode", flush=True)
                                break
                    result.steps.append(checked - first_step)
                    if not done:
                        break
                    result.completed += 1
                    start_state = latest[-1]
                # The recorder writes behind the live stream: let the world run a few steps more and the
                # recorder catch up before stopping it, then check that the bag holds the whole episode.
                end_step = int(latest[-1].step) + self.args.tail_steps
                wait_for(node, lambda e=end_step: latest[-1].step >= e, 30.0, "the tail steps", processes)
                drain_until = time.monotonic() + self.args.drain
                wait_for(node, lambda d=drain_until: time.monotonic() > d, self.args.drain + 5, "the drain")
                stop_all([recorder])
                recorder = None
                recorded = _recorded_steps(bag)
                if result.completed and recorded < end_step - self.args.tail_steps:
                    print(f"collect: episode {spec.index}: the bag ends at step {recorded} before the "
                          f"demonstration did; counted as failed (raise --drain)", flush=True)
                    result.completed = 0
                result.seconds = time.monotonic() - episode_started
                if result.success:
                    result.bag = str(bag)
                elif self.args.keep_failed:
                    failed = self.bag_dir / "failed" / bag.name
                    failed.parent.mkdir(exist_ok=True)
                    shutil.move(str(bag), failed)
                    result.bag = str(failed)
                else:
                    shutil.rmtree(bag, ignore_errors=True)
                results.append(result)
                print(f"collect: episode {spec.index + 1}/{len(self.specs)}: {' -> '.join(spec.tasks)}: "
                      f"{result.completed}/{len(spec.tasks)} done in {sum(result.steps)} steps "
                      f"({result.seconds:.1f} s){' -> ' + result.bag if result.bag else ''}", flush=True)
                if quitting:
                    print("collect: stopped by the operator", flush=True)
                    break
        except (TimeoutError, RuntimeError) as error:
            print(f"openhelix collect: {error}", file=sys.stderr, flush=True)
            status = 1
        finally:
            stop_all([p for p in (recorder, *processes) if p is not None])
            node.destroy_node()
            rclpy.try_shutdown()
        return results, status

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
            "logs": str(self.log_dir),
        }
