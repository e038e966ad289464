"""``openhelix up [sim|eval|record|robot] [name:=value ...]``: a launch file's graph without ros2 launch.

Starts the nodes of ``launch/<graph>.launch.py`` (declared once, in openhelix_ros/common/graphs.py) as separate
processes with the same parameter files, overrides and remaps, prints their output prefixed with the node
name, and keeps them up until Ctrl-C (or SIGTERM). A node that exits on its own ends the graph with its
last log lines and a non-zero status: nothing keeps running half a graph.

    openhelix up sim checkpoint:=checkpoints/easy6
    openhelix say "open the drawer" --task open_drawer       # from another terminal
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from openhelix_ros.common.environment import project_root
from openhelix_ros.common.graphs import GRAPHS, get_graph, parse_assignments

POLL_PERIOD = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lines = []
    for graph in GRAPHS.values():
        lines.append(f"{graph.name}: {graph.summary}")
        lines += [f"    {a.name}:={a.default!r}  {a.description}" for a in graph.arguments]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "graphs and their arguments:\n  " + "\n  ".join(lines)
    parser.add_argument("graph", choices=sorted(GRAPHS), help="which launch file's graph to start")
    parser.add_argument("assignments", nargs="*", metavar="name:=value", help="launch arguments")
    parser.add_argument("--log-dir", default="", help="where the nodes' logs go (default runs/up-<graph>/logs)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the nodes' output")


class LogEcho:
    """Prints what each node wrote to its log since the last look, prefixed with its name."""

    def __init__(self, processes) -> None:
        self._offsets = {entry.label: 0 for entry in processes}
        self._processes = processes

    def poll(self) -> None:
        for entry in self._processes:
            try:
                with entry.log_path.open("rb") as log:
                    log.seek(self._offsets[entry.label])
                    chunk = log.read()
            except FileNotFoundError:
                continue
            complete = chunk[:chunk.rfind(b"\n") + 1]  # a half-written line waits for its end
            self._offsets[entry.label] += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                print(f"[{entry.label}] {line}", flush=True)


def run(args: argparse.Namespace) -> int:
    from openhelix_ros.common.processes import start_graph, stop_all

    graph = get_graph(args.graph)
    try:
        given = parse_assignments(args.assignments)
        values = graph.values(given)
    except ValueError as error:
        print(f"openhelix up {graph.name}: {error}", file=sys.stderr)
        return 2
    log_dir = Path(args.log_dir) if args.log_dir else project_root() / "runs" / f"up-{graph.name}" / "logs"
    stop = []

    def interrupted(signum, _frame) -> None:
        stop.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        processes = start_graph(graph, given, log_dir=log_dir)
    except (ValueError, FileNotFoundError) as error:
        print(f"openhelix up {graph.name}: {error}", file=sys.stderr)
        return 2
    shown = ", ".join(f"{name}:={value}" for name, value in values.items())
    print(f"[up] {graph.name}: {', '.join(p.label for p in processes)} ({shown}); logs in {log_dir}; "
          "Ctrl-C stops the graph", flush=True)
    echo = None if args.quiet else LogEcho(processes)
    status = 0
    try:
        while not stop:
            if echo is not None:
                echo.poll()
            dead = [entry for entry in processes if not entry.alive]
            if dead:
                for entry in dead:
                    print(f"[up] {entry.label} exited with status {entry.returncode}; last lines of "
                          f"{entry.log_path}:\n{entry.log_tail()}", file=sys.stderr, flush=True)
                status = 1
                break
            time.sleep(POLL_PERIOD)
    finally:
        stop_all(processes)
        if echo is not None:
            echo.poll()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop:
        print(f"[up] {stop[0]}: stopped {graph.name}", flush=True)
    return status
