"""Helpers for the tests that start whole graphs: reading a running node's parameters over its ROS
parameter service, and instructing the graph as a user does (``openhelix say``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters

from openhelix_ros.processes import call_service, wait_for

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
