"""Health on /diagnostics and supervised workers, across processes: System 2 (tiny, a real process)
reports its input rates, the messages it dropped by reason and its worker's jobs; a worker whose job
runs past ``worker_deadline`` makes its node exit non-zero instead of staying up silent."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from openhelix_msgs.msg import GoalLatent, Instruction
from openhelix_ros.common.conversions import rgb_to_image
from openhelix_ros.common.processes import wait_for

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def values_of(status) -> dict[str, str]:
    return {pair.key: pair.value for pair in status.values}


def latest_statuses(arrays: list[DiagnosticArray], node: str) -> dict:
    for array in reversed(arrays):
        statuses = {s.name: s for s in array.status if s.name.startswith(f"{node}: ")}
        if statuses:
            return statuses
    return {}


@pytest.mark.timeout(240)
def test_system2_reports_rates_drops_by_reason_and_its_worker(peer, processes):
    arrays: list[DiagnosticArray] = []
    latents: list[GoalLatent] = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", arrays.append, RELIABLE)
    peer.create_subscription(GoalLatent, "goal_latent", latents.append, LATCHED)
    images = peer.create_publisher(Image, "camera/static/image_raw", RELIABLE)
    instructions = peer.create_publisher(Instruction, "instruction", RELIABLE)
    node = processes.node("system2", "model:=tiny", "torch_threads:=1", "clock_mode:=realtime", "rate:=0.0",
                          ready="system2 ready")
    wait_for(peer, lambda: instructions.get_subscription_count() and images.get_subscription_count(), 60,
             "System 2's subscriptions", [node])
    instructions.publish(Instruction(text="x" * 5000, sequence=1))  # over max_instruction_chars
    instructions.publish(Instruction(text="", sequence=2))
    bad = Image(height=8, width=8, encoding="mono8", step=8, data=bytes(64))
    images.publish(bad)
    images.publish(bad)
    instructions.publish(Instruction(text="open the drawer", sequence=3))
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for index in range(1, 6):
        images.publish(rgb_to_image(rgb, "static_camera", index * 100_000_000))
        wait_for(peer, lambda n=index: len(latents) >= n, 60, f"latent {index}", [node])

    def reported() -> bool:
        statuses = latest_statuses(arrays, "system2")
        worker = statuses.get("system2: worker system2-inference")
        return worker is not None and values_of(worker)["jobs"] == "5"

    wait_for(peer, reported, 30, "a diagnostics report after the five latents", [node])
    statuses = latest_statuses(arrays, "system2")
    values = values_of(statuses["system2: node"])
    assert values["in camera/static/image_raw"].startswith("7 messages")
    assert values["in instruction"].startswith("3 messages")
    assert values["out goal_latent"].startswith("5 messages")
    assert values["instruction"] == "'open the drawer'"
    drops = values_of(statuses["system2: dropped messages"])
    assert drops == {
        "dropped camera/static/image_raw: image dropped: encoding 'mono#' is not colour (System # reads rgb#, "
        "bgr#, rgba#, bgra#)": "2",
        "dropped instruction: instruction has # characters, more than the limit of # (parameter "
        "max_instruction_chars); not encoded": "1",
        "dropped instruction: instruction is empty: System # needs a task in words (e.g. 'open the drawer')": "1"}
    worker = statuses["system2: worker system2-inference"]
    assert worker.level == b"\x00" and values_of(worker)["failures"] == "0"
    assert all(status.hardware_id == "/system2" for status in statuses.values())
    assert node.alive


HANGING_NODE = """
import sys, time
from rclpy.node import Node
from openhelix_ros.common.node_utils import run_node, start_worker
from openhelix_ros.common.supervision import WorkerSupervisor

class Hanging(Node):
    def __init__(self):
        super().__init__("hanging_worker")
        self.supervisor = WorkerSupervisor("inference", deadline=1.0, log_error=self.get_logger().error)
        start_worker(self, self._work, "inference", self.supervisor)

    def _work(self):
        self.supervisor.run("a quick job", time.sleep, 0.05)
        self.supervisor.run("a stuck job", time.sleep, 600)  # a deadlocked driver call, say

sys.exit(run_node(Hanging, sys.argv))
"""


def test_a_worker_past_its_deadline_stops_its_node_with_a_failure_status():
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", HANGING_NODE], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "worker 'inference' hung: a stuck job has run for" in output
    assert "(worker_deadline 1 s); stopping the node" in output
    assert time.monotonic() - started < 60, "the node waited for its hung job"
