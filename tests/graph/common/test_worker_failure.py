"""A node whose worker thread raises does not stay up looking healthy: run_node logs the traceback,
stops the node and exits non-zero (common/node_utils.py: start_worker)."""

from __future__ import annotations

import subprocess
import sys

NODE = """
import sys, time
from rclpy.node import Node
from openhelix_ros.common.node_utils import run_node, start_worker

class Failing(Node):
    def __init__(self):
        super().__init__("failing_worker")
        start_worker(self, self._work, "doomed")

    def _work(self):
        time.sleep(0.3)
        raise RuntimeError("inference exploded")

sys.exit(run_node(Failing, sys.argv))
"""


def test_a_dead_worker_stops_its_node_with_a_traceback_and_a_failure_status():
    result = subprocess.run([sys.executable, "-c", NODE], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "worker thread 'doomed' died, stopping the node" in output
    assert "RuntimeError: inference exploded" in output
