"""Helpers for the tests that start whole graphs: reading a running node's parameters over its ROS
parameter service, instructing the graph as a user does (``openhelix say``), and a graph command
(``openhelix up``, a launch file) as a support.processes.Process that spins a peer while it waits."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters

from openhelix_ros.common.processes import call_service, wait_for
from support.processes import Process

ROOT = Path(__file__).resolve().parents[2]
OPENHELIX = str(Path(sys.executable).with_name("openhelix"))
SHIPPED = ROOT / "checkpoints" / "easy6"
STEP_NS = 1_000_000_000 / 30  # one control step of the bridge in lockstep sim time


def parameter_values(peer, node: str, names: list[str], processes=()) -> dict:
    client = peer.create_client(GetParameters, f"/{node}/get_parameters")
    try:
        wait_for(peer, client.service_is_ready, 60, f"{node}'s parameter service", processes)
        answer = call_service(peer, client, GetParameters.Request(names=names), 30, processes)
    finally:
        peer.destroy_client(client)
    fields = {ParameterType.PARAMETER_STRING: "string_value", ParameterType.PARAMETER_INTEGER: "integer_value",
              ParameterType.PARAMETER_BOOL: "bool_value", ParameterType.PARAMETER_DOUBLE: "double_value"}
    return {name: getattr(value, fields[value.type]) for name, value in zip(names, answer.values, strict=True)}


def say(text: str, task: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPENHELIX, "say", text, "--task", task, "--timeout", "60", "--readers", "2"],
                          capture_output=True,
                          text=True, timeout=120)


class GraphCommand(Process):
    """A command that runs a graph until Ctrl-C (``openhelix up``, a launch file), its output in its log
    file: ``processes.command(argv, kind=GraphCommand)``."""

    def text(self) -> str:
        return self.output()

    def wait_for(self, peer, predicate, timeout: float, what: str) -> None:
        """Spin ``peer`` until ``predicate()``; fails at once if the command exited, with its output."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.alive, f"{self.argv[:3]} exited {self.returncode}:\n{self.text()[-4000:]}"
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}:\n{self.text()[-4000:]}"
            rclpy.spin_once(peer, timeout_sec=0.05)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Ctrl-C (SIGINT), as a user stops it; SIGKILL if it does not end within ``timeout`` s."""
        return super().stop(sig, timeout)


def run_lockstep_dual_graph(processes, out: Path, system_params: list[str], trajectories: int,
                            asy: int = 3) -> tuple[dict, dict[str, str]]:
    """calvin_bridge (embedded, lockstep) + system2 + system1 with ``system_params``, started as
    ``openhelix demo`` orders them (the policies first, so System 2 sees the image of step 0), observed
    by tests/peers/lockstep_observer.py until ``trajectories`` have come: (its JSON, each node's log).
    Every trajectory must name the exact Asy(``asy``) latent and the steps must follow one another."""
    from openhelix_ros.common.timing import latent_step_for_plan

    shared = ("clock_mode:=lockstep", f"latent_period_steps:={asy}")
    system2 = processes.node("system2", *shared, *system_params)
    system1 = processes.node("system1", *shared, *system_params)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all("ready" in node.output() for node in (system1, system2)):
        time.sleep(0.2)
    bridge = processes.node("calvin_bridge", "backend:=embedded", "clock_mode:=lockstep")
    observer = processes.peer("lockstep_observer.py", "--out", str(out), "--trajectories", str(trajectories),
                              ready=None)
    code = observer.wait(timeout=150)
    text = {node.label: node.output() for node in (system1, system2, bridge)}
    assert code == 0, f"{observer.output()}\n{text}"
    for node in (bridge, system1, system2):
        node.stop()
    data = json.loads(out.read_text())
    latent_step = {int(sequence): round(stamp / STEP_NS) for sequence, stamp in data["latents"].items()}
    steps = []
    for trajectory in data["trajectories"]:
        step = round(trajectory["stamp"] / STEP_NS)
        steps.append(step)
        assert latent_step[trajectory["latent_sequence"]] == latent_step_for_plan(step, asy), (step, trajectory)
    assert steps == list(range(len(steps)))  # one plan per step, in order: the world waited for each
    assert "holding the pose" not in text["calvin_bridge"], text["calvin_bridge"]
    assert "not exact" not in text["system1"]
    return data, text
