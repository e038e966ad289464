"""Fixtures shared by the tests that talk to node processes over DDS."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.node import Node


@pytest.fixture(scope="module")
def peer(request):
    """An rclpy node in the test process, the other end of the nodes under test (one per test module)."""
    rclpy.init()
    node = Node(request.module.__name__.rsplit(".", 1)[-1] + "_peer")
    yield node
    node.destroy_node()
    rclpy.shutdown()
