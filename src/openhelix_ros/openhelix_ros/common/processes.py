"""Run OpenHelix nodes as separate processes without ros2 launch (which no registry ships).

The ``openhelix`` verbs (collect, demo, eval) and the tests start the graph with this module: each node
is ``python -m openhelix_ros.<component>.node --ros-args [--params-file ...] [-p name:=value ...]`` with its
output in a log file, so the processes talk over real DDS exactly as under ros2 launch. Parameter files
come first and the given values win over them, as launch_ros's ``parameters=[file, {...}]`` does.

    from openhelix_ros.common.processes import NodeProcess, wait_for

    bridge = NodeProcess.start("calvin_bridge", {"clock_mode": "lockstep", "render": False},
                               log_dir=run_dir / "logs")
    try:
        reset = node.create_client(ResetScene, "reset_scene")
        wait_for(node, reset.service_is_ready, 30, "the bridge's reset_scene", processes=[bridge])
        ...
    finally:
        stop_all([bridge])            # SIGINT, then SIGKILL after a grace period

``wait_for`` spins a caller's rclpy node while it waits, and fails early (with the tail of the log) if a
watched process dies, rather than waiting out its timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from openhelix_ros.common.graph import NODE_MODULES
from openhelix_ros.common.graphs import RVIZ_CONFIG, Graph, ResolvedNode, get_graph, wanted_rviz


def format_parameter(name: str, value: Any) -> str:
    """``name:=value`` as ``--ros-args -p`` takes it (the value is read as YAML, so strings that YAML
    would read as something else, and empty strings, are quoted)."""
    if isinstance(value, str):
        try:
            plain = value != "" and yaml.safe_load(value) == value and "\n" not in value
        except yaml.YAMLError:
            plain = False
        text = value if plain else json.dumps(value)
    elif isinstance(value, (list, tuple)):
        text = json.dumps(list(value))
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(float(value)) if isinstance(value, float) else str(value)
    else:
        raise ValueError(f"parameter {name!r}: cannot pass a {type(value).__name__} on the command line")
    return f"{name}:={text}"


def node_command(node: str, parameters: Mapping[str, Any] | None = None, *, name: str | None = None,
                 params_files: Sequence[str | Path] = (), remaps: Mapping[str, str] | None = None,
                 python: str = sys.executable) -> list[str]:
    """The command line that runs node ``node`` (its module, ``graph.NODE_MODULES``) with parameter files, single values
    (``-p``), an optional node name and topic remappings.

    Beware: rcl gives a file's entries under the node's own name precedence over ``-p`` values (which
    count as ``/**`` entries), so ``-p`` cannot override a node's own parameter file;
    :meth:`NodeProcess.start` therefore writes overrides into one more file, read last.
    """
    try:
        module = NODE_MODULES[node]
    except KeyError:
        raise ValueError(f"no node {node!r}; the graph's nodes are {', '.join(NODE_MODULES)}") from None
    command = [python, "-m", module, "--ros-args"]
    if name:
        command += ["-r", f"__node:={name}"]
    for path in params_files:
        command += ["--params-file", str(path)]
    for key, value in (parameters or {}).items():
        command += ["-p", format_parameter(key, value)]
    for source, target in (remaps or {}).items():
        command += ["-r", f"{source}:={target}"]
    return command


class NodeProcess:
    """One node in its own process, its stdout and stderr in a log file."""

    def __init__(self, label: str, process: subprocess.Popen, log_path: Path):
        self.label = label
        self.process = process
        self.log_path = log_path

    @classmethod
    def start(cls, node: str, parameters: Mapping[str, Any] | None = None, *, log_dir: str | Path,
              label: str | None = None, env: Mapping[str, str] | None = None, **command_options) -> NodeProcess:
        """Start node ``node`` (``graph.NODE_MODULES``); its output goes to ``<log_dir>/<label>.log``.

        ``env`` adds to (does not replace) this process's environment; ``command_options`` go to
        :func:`node_command` (name, params_files, remaps).
        """
        label = label or command_options.get("name") or node
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{label}.log"
        if parameters and command_options.get("params_files"):
            # Overrides must beat the node's own file: a params file under the node's name, read last.
            overrides = log_dir / f"{label}.overrides.yaml"
            node_name = command_options.get("name") or node
            overrides.write_text(yaml.safe_dump({node_name: {"ros__parameters": dict(parameters)}}))
            command_options["params_files"] = [*command_options["params_files"], overrides]
            parameters = None
        environment = dict(os.environ)
        environment.setdefault("PYTHONUNBUFFERED", "1")
        environment.update(env or {})
        with log_path.open("w") as log:
            process = subprocess.Popen(node_command(node, parameters, **command_options), stdout=log,
                                       stderr=subprocess.STDOUT, env=environment)
        return cls(label, process, log_path)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> int:
        """SIGINT (nodes finish cleanly: a recorder closes its bag), then SIGKILL after ``grace`` s."""
        return stop_all([self], grace)[0]

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"NodeProcess({self.label!r}, pid {self.process.pid}, {state}, log {self.log_path})"


def stop_all(processes: Iterable[NodeProcess | subprocess.Popen], grace: float = 10.0) -> list[int]:
    """Stop every process (a NodeProcess or a bare Popen): SIGINT to all at once, wait up to ``grace`` s
    in total, SIGKILL what is left. Returns the exit codes in order."""
    popens = [entry.process if isinstance(entry, NodeProcess) else entry for entry in processes]
    for process in popens:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in popens:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return [process.returncode for process in popens]


def start_graph(graph: Graph | str, arguments: Mapping[str, str] | None = None, *, log_dir: str | Path,
                extra: Mapping[str, Mapping[str, Any]] | None = None, config: Path | None = None,
                env: Mapping[str, str] | None = None) -> list[NodeProcess]:
    """Start every node of a graph of :mod:`openhelix_ros.common.graphs` as its launch file does: the same nodes,
    parameter files, overrides and remaps, each in its own process (``openhelix up``, demo, collect).

    ``arguments`` are launch-argument strings (``{"checkpoint": "runs/x"}``); ``extra`` adds per-node
    overrides beyond them. What must hold before anything starts (rviz2 for ``rviz:=true``) is checked
    first, and if any node fails to start the ones already started are stopped.
    """
    from openhelix_ros.common.environment import config_dir

    graph = get_graph(graph) if isinstance(graph, str) else graph
    values = graph.values(arguments)
    nodes = graph.resolve(arguments, extra)
    config = Path(config) if config is not None else config_dir()
    missing = sorted({str(config / name) for node in nodes for name in node.parameter_files
                      if not (config / name).is_file()})
    if missing:
        raise FileNotFoundError(f"parameter file(s) missing: {', '.join(missing)}; nothing was started")
    rviz = wanted_rviz(graph, values)
    processes: list[NodeProcess] = []
    try:
        for node in nodes:
            processes.append(start_node(node, log_dir=log_dir, config=config, env=env))
        if rviz is not None:
            rviz_config = config.parent / "rviz" / RVIZ_CONFIG
            log_path = Path(log_dir) / "rviz2.log"
            with log_path.open("w") as log:
                popen = subprocess.Popen([rviz, "-d", str(rviz_config)], stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})})
            processes.append(NodeProcess("rviz2", popen, log_path))
    except BaseException:
        stop_all(processes)
        raise
    return processes


def start_node(node: ResolvedNode, *, log_dir: str | Path, config: Path | None = None,
               extra: Mapping[str, Any] | None = None, label: str | None = None,
               env: Mapping[str, str] | None = None) -> NodeProcess:
    """Start one node of a resolved graph (:meth:`Graph.resolve`), with ``extra`` overrides on top:
    what a verb uses for a node it starts more than once (collect's recorder, one per episode)."""
    from openhelix_ros.common.environment import config_dir

    config = Path(config) if config is not None else config_dir()
    return NodeProcess.start(node.executable, {**node.overrides, **(extra or {})}, log_dir=log_dir, env=env,
                             label=label, params_files=[config / name for name in node.parameter_files],
                             remaps=node.remaps)


class ProcessDied(RuntimeError):
    """A node process exited while something waited for it."""


def check_alive(processes: Iterable[NodeProcess]) -> None:
    for entry in processes:
        if not entry.alive:
            raise ProcessDied(f"{entry.label} exited with status {entry.returncode}; last lines of "
                              f"{entry.log_path}:\n{entry.log_tail()}")


def wait_for(node, predicate: Callable[[], bool], timeout: float, what: str,
             processes: Iterable[NodeProcess] = (), spin_period: float = 0.05) -> None:
    """Spin ``node`` (an rclpy node, or None to just sleep) until ``predicate()`` is true.

    Raises TimeoutError naming ``what`` after ``timeout`` s, or ProcessDied as soon as one of
    ``processes`` has exited.
    """
    import rclpy

    processes = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        check_alive(processes)
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        if node is not None:
            rclpy.spin_once(node, timeout_sec=spin_period)
        else:
            time.sleep(spin_period)


def topic_has_publishers(node, topic: str) -> bool:
    """True once the graph shows a publisher on ``topic`` (resolved in ``node``'s namespace)."""
    return node.count_publishers(topic) > 0


def topic_has_subscribers(node, topic: str, node_name: str | None = None) -> bool:
    """True once ``topic`` has a subscriber (one of node ``node_name`` when given)."""
    if node_name is None:
        return node.count_subscribers(topic) > 0
    resolved = node.resolve_topic_name(topic)
    return any(info.node_name == node_name for info in node.get_subscriptions_info_by_topic(resolved))


def subscriber_nodes(node, topic: str) -> set[tuple[str, str]]:
    """The (namespace, name) of every node the graph shows subscribed to ``topic``: a node may hold several
    subscriptions of one topic (every instruction reader has two: node_utils.subscribe_instructions)."""
    resolved = node.resolve_topic_name(topic)
    return {(info.node_namespace, info.node_name) for info in node.get_subscriptions_info_by_topic(resolved)}


def matched_reader_nodes(node, publisher, topic: str) -> int:
    """How many nodes read ``topic``, counted only once ``publisher`` has matched every subscription the
    graph shows (0 before): a volatile reader that matches after a message went out never gets it."""
    readers = node.get_subscriptions_info_by_topic(node.resolve_topic_name(topic))
    if publisher.get_subscription_count() < len(readers):
        return 0
    return len({(info.node_namespace, info.node_name) for info in readers})


def call_service(node, client, request, timeout: float, processes: Iterable[NodeProcess] = ()):
    """Call a service and spin ``node`` until the answer comes (TimeoutError / ProcessDied otherwise)."""
    future = client.call_async(request)
    wait_for(node, future.done, timeout, f"an answer from {client.srv_name}", processes)
    return future.result()
