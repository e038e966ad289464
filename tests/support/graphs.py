"""Helpers for the tests that start whole graphs: reading a running node's parameters over its ROS
parameter service, instructing the graph as a user does (``openhelix say``), and a graph command
(``openhelix up``, a launch file) as a support.processes.Process that spins a peer while it waits."""

from __future__ import annotations

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
