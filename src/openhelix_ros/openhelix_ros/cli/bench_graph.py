"""Graph bench: what the ROS nodes add on top of the models, measured through real processes over DDS.

1. Point-cloud path overhead: the same PointCloud2 stream (30 Hz, 20k points, wall-clock stamps) into
   (a) a bare rclpy subscriber in its own process and (b) the system1 node's own subscription, which
   converts and checks the cloud and hands it to the planner; latency = stamp to end of the callback.
   Ratio of the medians against DESIGN.md's target (<= 1.5x).
2. The running pair: system2 and system1 as separate processes, fed like the bridge feeds them (image,
   cloud, pose, joints at 30 Hz, one instruction): end-to-end latency image -> latent -> first
   trajectory that used it, latent and trajectory rates and in-node inference times while both run
   (the two models compete for the CPU, as on a robot computer), and the latent age at planning.

Writes ``results.json`` and ``report.md`` under ``out_dir`` (default runs/bench-graph/).

    python -m openhelix_ros.cli.bench_graph [--out runs/bench-graph] [--tiny] [--duration 20]

``run_graph_bench(out_dir)`` is the entry ``openhelix bench`` calls. The bench uses its own ROS domain
(``ROS_DOMAIN_ID`` 100-199 unless one is set) so a graph running beside it is neither measured nor
disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = "runs/bench-graph"
TARGET_OVERHEAD = 1.5
CLOUD_RATE = 30.0


def _stats_ms(values_ns_or_s, scale: float) -> dict:
    values = np.asarray(values_ns_or_s, dtype=np.float64) * scale
    if values.size == 0:
        return {"n": 0}
    return {"n": int(values.size), "p50_ms": round(float(np.percentile(values, 50)), 3),
            "p90_ms": round(float(np.percentile(values, 90)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "mean_ms": round(float(values.mean()), 3)}


def _cloud(points: int, seed: int = 0):
    from openhelix_ros.common.conversions import points_to_pointcloud2

    rng = np.random.default_rng(seed)
    xyz = rng.uniform([-0.5, -0.5, 0.0], [0.5, 0.4, 0.5], (points, 3)).astype(np.float32)
    return points_to_pointcloud2(xyz, rng.integers(0, 256, (points, 3), dtype=np.uint8), "world")


# ---------------------------------------------------------------------------------------------------
# Child processes of the overhead measurement


def _child(kind: str, topic: str, count: int, out: str, timeout: float) -> int:
    """Receive ``count`` clouds on ``topic`` with a bare subscriber (``raw``) or the system1 node
    (``system1``, its ``points`` remapped) and write the latencies (stamp -> end of callback, ns) to ``out``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2

    from openhelix_ros.common import graph
    from openhelix_ros.common.conversions import stamp_to_ns
    from openhelix_ros.common.node_utils import SENSOR_QOS

    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent stops a child that lost clouds: keep what came
        signal.signal(sig, lambda *_: stop.update(now=True))
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=["--ros-args", "-r", f"{graph.POINTS}:={topic}"],
               signal_handler_options=SignalHandlerOptions.NO)
    latencies: list[int] = []
    if kind == "raw":
        node = rclpy.create_node("bench_raw_cloud_subscriber")

        def on_cloud(message: PointCloud2) -> None:
            latencies.append(time.time_ns() - stamp_to_ns(message.header.stamp))

        node.create_subscription(PointCloud2, topic, on_cloud, SENSOR_QOS)
    else:
        from openhelix_ros.system1.node import System1Node

        class TimedSystem1(System1Node):
            def _on_points(self, message: PointCloud2) -> None:
                super()._on_points(message)  # conversion, checks, hand-over to the planner thread
                latencies.append(time.time_ns() - stamp_to_ns(message.header.stamp))

        node = TimedSystem1()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print("READY", flush=True)
    end = time.monotonic() + timeout
    while len(latencies) < count and time.monotonic() < end and not stop["now"]:
        executor.spin_once(timeout_sec=0.1)
    Path(out).write_text(json.dumps(latencies))
    close = getattr(node, "close", None)
    if callable(close):
        close()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _spawn(args: list[str], log_path: Path | None = None) -> subprocess.Popen:
    out = open(log_path, "w") if log_path else subprocess.PIPE
    return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                            text=log_path is None, env=dict(os.environ))


def _stop(process: subprocess.Popen) -> None:
    from openhelix_ros.common.processes import stop_all

    stop_all([process], grace=15.0)


def _spin(node, seconds: float) -> None:
    import rclpy

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)


def _overhead(node, child: subprocess.Popen, publisher, kind: str, count: int, points: int, out: Path,
              progress) -> dict:
    """Publish ``count`` (+10) clouds at the sensor rate to an already matched child; its latencies."""
    cloud = _cloud(points)
    progress(f"  {kind}: {count} clouds of {points} points at {CLOUD_RATE:g} Hz")
    try:
        next_time = time.monotonic()
        for _ in range(count + 10):  # a few extra: best effort may drop some
            cloud.header.stamp.sec, cloud.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
            publisher.publish(cloud)
            next_time += 1.0 / CLOUD_RATE
            _spin(node, max(0.0, next_time - time.monotonic()))
        try:
            child.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass  # best effort lost some clouds: stopping it makes it write what it received
    finally:
        _stop(child)
    latencies = json.loads(out.read_text()) if out.exists() else []
    return {**_stats_ms(latencies, 1e-6), "sent": count + 10}


# ---------------------------------------------------------------------------------------------------
# The running pair


def _start_pair(system1_model: str, system2_model: str, work: Path):
    """System 1 and System 2 as the sim graph declares them (common/graphs.py: its parameter files and
    arguments, realtime), each made to work as fast as it can: System 2 encodes every image, System 1
    replans on every cloud. Returns their NodeProcesses (logs: system1.log, system2.log in ``work``)."""
    from openhelix_ros.common.graphs import SIM
    from openhelix_ros.common.processes import start_node

    nodes = {node.name: node for node in SIM.resolve(
        {"clock_mode": "realtime", "system1_model": system1_model, "system2_model": system2_model},
        extra={"system2": {"rate": 0.0, "torch_threads": 1},
               "system1": {"replan_rate": 0.0, "max_latent_age": 30.0, "torch_threads": 1}})}
    return start_node(nodes["system1"], log_dir=work), start_node(nodes["system2"], log_dir=work)


class _GraphFeed:
    """The bench's stand-in for the bridge: publishes a static image, the pose, the joints and a cloud
    at CLOUD_RATE, and keeps what comes back (latents, trajectories) with its arrival time."""

    def __init__(self, node, points: int) -> None:
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from scipy.spatial.transform import Rotation
        from sensor_msgs.msg import Image, JointState, PointCloud2

        from openhelix_msgs.msg import EETrajectory, GoalLatent, Instruction
        from openhelix_ros.common import graph

        self.node = node
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.images = node.create_publisher(Image, graph.STATIC_IMAGE, reliable)
        self.clouds = node.create_publisher(PointCloud2, graph.POINTS, reliable)
        self.poses = node.create_publisher(PoseStamped, graph.EE_POSE, reliable)
        self.joints = node.create_publisher(JointState, graph.JOINT_STATES, reliable)
        self.instructions = node.create_publisher(Instruction, graph.INSTRUCTION, reliable)
        self.latents: dict[int, dict] = {}
        self.trajectories: list[dict] = []
        node.create_subscription(GoalLatent, graph.GOAL_LATENT, self._on_latent, latched)
        node.create_subscription(EETrajectory, graph.EE_TRAJECTORY, self._on_trajectory, reliable)
        rng = np.random.default_rng(1)
        self.image = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)  # CALVIN's static camera size
        self.cloud = _cloud(points, seed=1)
        self.position = np.array([0.05, -0.1, 0.35])
        self.quaternion = Rotation.from_euler("xyz", [np.pi, 0, np.pi / 2]).as_quat()
        self.joint_names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]

    def _on_latent(self, message) -> None:
        from openhelix_ros.common.conversions import stamp_to_ns

        self.latents[int(message.sequence)] = {"arrival": time.time_ns(), "stamp": stamp_to_ns(message.observation_stamp),
                                               "inference_time": float(message.inference_time)}

    def _on_trajectory(self, message) -> None:
        from openhelix_ros.common.conversions import stamp_to_ns

        self.trajectories.append({"arrival": time.time_ns(), "stamp": stamp_to_ns(message.header.stamp),
                                  "latent_sequence": int(message.latent_sequence),
                                  "inference_time": float(message.inference_time)})

    def nodes_up(self) -> bool:
        from openhelix_ros.common import graph

        return bool(self.images.get_subscription_count() and self.clouds.get_subscription_count()
                    and self.node.count_publishers(graph.EE_TRAJECTORY))

    def instruct(self, text: str, task: str) -> None:
        from openhelix_msgs.msg import Instruction
        from openhelix_ros.common.conversions import make_header

        self.instructions.publish(Instruction(header=make_header(""), text=text, task=task, sequence=1))

    def publish_step(self) -> None:
        from openhelix_ros.common import graph
        from openhelix_ros.common.conversions import joint_state_to_msg, pose_stamped_to_msg, rgb_to_image

        stamp = time.time_ns()
        self.images.publish(rgb_to_image(self.image, "static_camera", stamp))
        self.poses.publish(pose_stamped_to_msg(self.position, self.quaternion, graph.WORLD_FRAME, stamp))
        self.joints.publish(joint_state_to_msg(self.joint_names, [0.0] * 7 + [0.04, 0.04], stamp=stamp))
        self.cloud.header.stamp.sec, self.cloud.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        self.clouds.publish(self.cloud)

    def publish_while(self, keep_going, seconds: float) -> None:
        """Publish steps at CLOUD_RATE while ``keep_going()``, for ``seconds`` at most."""
        next_time = time.monotonic()
        end = next_time + seconds
        while keep_going() and time.monotonic() < end:
            self.publish_step()
            next_time += 1.0 / CLOUD_RATE
            _spin(self.node, max(0.0, next_time - time.monotonic()))


def _graph(node, system1, system2, system1_model: str, system2_model: str,
           duration: float, points: int, work: Path, progress) -> dict:
    """System 2 and System 1 together on the feed: end-to-end latency, rates and latent age."""
    feed = _GraphFeed(node, points)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not feed.nodes_up():
            if not system1.alive or not system2.alive:
                raise RuntimeError("a node exited at start-up:\n" + (work / "system1.log").read_text()
                                   + (work / "system2.log").read_text())
            _spin(node, 0.1)
        progress(f"  nodes up (system2 {system2_model}, system1 {system1_model}); warming up")
        feed.instruct("open the drawer", "open_drawer")
        feed.publish_while(lambda: not feed.trajectories, 60.0)
        if not feed.trajectories:
            raise RuntimeError("no trajectory within 60 s of warm-up; logs in " + str(work))
        _spin(node, 1.0)  # the first, slow inferences (allocations) are not counted
        feed.latents.clear()
        feed.trajectories.clear()
        progress(f"  measuring for {duration:g} s")
        start_ns = time.time_ns()
        feed.publish_while(lambda: True, duration)
        _spin(node, 1.0)  # let work in flight arrive (a plan takes well under a second)
        stop_ns = start_ns + int(duration * 1e9)
    finally:
        _stop(system1)
        _stop(system2)
    return {"system1_model": system1_model, "system2_model": system2_model, "duration_s": duration,
            "observation_rate_hz": CLOUD_RATE, "cloud_points": points,
            **_graph_figures(feed.latents, feed.trajectories, start_ns, stop_ns, duration)}


def _graph_figures(latents: dict[int, dict], trajectories: list[dict], start_ns: int, stop_ns: int,
                   duration: float) -> dict:
    """Latencies, rates and ages of what arrived in the measuring window."""
    # End to end: image published (its stamp is the publish time) -> first trajectory using its latent.
    first_use: dict[int, int] = {}
    for t in trajectories:
        first_use.setdefault(t["latent_sequence"], t["arrival"])
    e2e, image_to_latent, latent_to_trajectory = [], [], []
    for sequence, latent in latents.items():
        if latent["stamp"] < start_ns:
            continue
        image_to_latent.append(latent["arrival"] - latent["stamp"])
        if sequence in first_use:
            e2e.append(first_use[sequence] - latent["stamp"])
            latent_to_trajectory.append(first_use[sequence] - latent["arrival"])
    in_window = [t for t in trajectories if start_ns <= t["stamp"] <= stop_ns]
    ages = [t["stamp"] - latents[t["latent_sequence"]]["stamp"] for t in in_window if t["latent_sequence"] in latents]
    latents_in_window = [v for v in latents.values() if start_ns <= v["stamp"] <= stop_ns]
    return {
        "end_to_end_image_to_trajectory": _stats_ms(e2e, 1e-6),
        "image_to_latent": _stats_ms(image_to_latent, 1e-6),
        "latent_to_first_trajectory": _stats_ms(latent_to_trajectory, 1e-6),
        "system2_rate_hz": round(len(latents_in_window) / duration, 3),
        "system1_rate_hz": round(len(in_window) / duration, 3),
        "system2_inference_in_node": _stats_ms([v["inference_time"] for v in latents_in_window], 1e3),
        "system1_inference_in_node": _stats_ms([t["inference_time"] for t in in_window], 1e3),
        "latent_age_at_planning": _stats_ms(ages, 1e-6),
    }


# ---------------------------------------------------------------------------------------------------
# Entry


def run_graph_bench(out_dir: str | os.PathLike = DEFAULT_OUT, system1_model: str = "default",
                    system2_model: str = "embedded", duration: float = 20.0, overhead_count: int = 300,
                    cloud_points: int = 20000, progress=print) -> dict:
    """Run both measurements; write results.json and report.md to ``out_dir``; return the results."""
    from openhelix_ros.common.environment import apply_ros_defaults

    apply_ros_defaults()
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random().randrange(100, 200)))
    import rclpy
    from sensor_msgs.msg import PointCloud2

    from openhelix_ros.common.node_utils import SENSOR_QOS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-graph-"))
    result = {"machine": f"{platform.processor() or 'cpu'} ({os.cpu_count()} cores)",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]),
              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    # Every process starts at once, so their imports (torch, transformers) overlap; each measurement
    # then runs on its own topic while the others sit idle.
    children, publishers, processes = {}, {}, []
    progress("starting the subscribers and the system1/system2 pair")
    for kind in ("raw", "system1"):
        topic = f"bench_graph/points_{kind}"
        children[kind] = _spawn(["-m", "openhelix_ros.cli.bench_graph", "--child", kind, "--child-topic", topic,
                                 "--count", str(overhead_count), "--child-out", str(work / f"{kind}.json")],
                                work / f"{kind}.log")
        processes.append(children[kind])
    pair = _start_pair(system1_model, system2_model, work)
    processes += list(pair)
    rclpy.init()
    node = rclpy.create_node("bench_graph")
    try:
        for kind in children:
            # The same sensor profile the bridge publishes with; both subscribers take it as SENSOR_QOS.
            publishers[kind] = node.create_publisher(PointCloud2, f"bench_graph/points_{kind}", SENSOR_QOS)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers.values()):
            for kind, child in children.items():
                if child.poll() is not None:
                    raise RuntimeError(f"{kind} subscriber exited: {(work / f'{kind}.log').read_text()}")
            _spin(node, 0.1)
        _spin(node, 1.0)
        progress("point-cloud path: bare rclpy subscriber vs the system1 node's subscription")
        cloud = {kind: _overhead(node, children[kind], publishers[kind], kind, overhead_count, cloud_points,
                                 work / f"{kind}.json", progress) for kind in children}
        raw, system1 = cloud["raw"], cloud["system1"]
        ratio = (system1["p50_ms"] / raw["p50_ms"]) if raw.get("n") and system1.get("n") else None
        result["cloud_path"] = {"raw_rclpy": raw, "system1_node": system1,
                                "overhead_ratio_p50": None if ratio is None else round(ratio, 3)}
        progress("system2 + system1 running together")
        result["graph"] = _graph(node, *pair, system1_model, system2_model, duration, cloud_points, work, progress)
    finally:
        for process in processes:
            _stop(process)
        node.destroy_node()
        rclpy.try_shutdown()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    ratio = result["cloud_path"]["overhead_ratio_p50"]
    result["targets"] = {f"node overhead over raw rclpy (cloud path) <= {TARGET_OVERHEAD}x": {
        "value": ratio, "target": TARGET_OVERHEAD, "met": ratio is not None and ratio <= TARGET_OVERHEAD}}
    result["logs"] = str(work)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(_markdown(result))
    progress(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return result


def _row(name: str, stats: dict) -> str:
    if not stats.get("n"):
        return f"| {name} | - | - | - | 0 |"
    return f"| {name} | {stats['p50_ms']} | {stats['p90_ms']} | {stats['p99_ms']} | {stats['n']} |"


def _markdown(result: dict) -> str:
    cloud, g = result["cloud_path"], result["graph"]
    lines = [
        f"# Graph bench ({result['machine']})", "",
        f"{result['date']}; ROS domain {result['ros_domain_id']}; load average (1, 5, 15 min) before "
        f"{result['load_average_before']}, after {result['load_average_after']} (other processes on a shared "
        "machine inflate the figures).", "",
        f"## Point-cloud path: {g['cloud_points']} points at {CLOUD_RATE:g} Hz, publish -> end of callback", "",
        "| subscriber | p50 ms | p90 ms | p99 ms | received |", "|---|---:|---:|---:|---:|",
        _row("bare rclpy", cloud["raw_rclpy"]), _row("system1 node (convert + check + hand-over)",
                                                    cloud["system1_node"]), "",
        f"Overhead (p50 ratio): **{cloud['overhead_ratio_p50']}x** (target <= {TARGET_OVERHEAD}x).", "",
        f"## system2 `{g['system2_model']}` + system1 `{g['system1_model']}` running together "
        f"({g['duration_s']:g} s, observations at {g['observation_rate_hz']:g} Hz)", "",
        "| what | p50 ms | p90 ms | p99 ms | n |", "|---|---:|---:|---:|---:|",
        _row("image -> latent -> first trajectory using it (end to end)", g["end_to_end_image_to_trajectory"]),
        _row("image -> latent", g["image_to_latent"]),
        _row("latent -> first trajectory using it", g["latent_to_first_trajectory"]),
        _row("System 2 arrival to latent, in the node", g["system2_inference_in_node"]),
        _row("System 1 plan, in the node", g["system1_inference_in_node"]),
        _row("latent age at planning (cloud stamp - image stamp)", g["latent_age_at_planning"]), "",
        f"Rates under load: System 2 **{g['system2_rate_hz']} Hz**, System 1 **{g['system1_rate_hz']} Hz** "
        "(System 1 replans on every new cloud once the previous plan is done).", "",
        "## Targets", "",
    ]
    for name, target in result["targets"].items():
        lines.append(f"- {name}: {'met' if target['met'] else 'NOT met'} ({target['value']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--tiny", action="store_true", help="tiny models (quick check) instead of embedded + default")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the running-pair measurement")
    parser.add_argument("--count", type=int, default=300, help="clouds per point-cloud path measurement")
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--child", choices=("raw", "system1"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.child_topic, args.count, args.child_out, timeout=300)
    models = ("tiny", "tiny") if args.tiny else ("default", "embedded")
    run_graph_bench(args.out, models[0], models[1], args.duration, args.count, args.points)
    return 0


if __name__ == "__main__":
    sys.exit(main())
