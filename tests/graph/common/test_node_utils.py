"""node_utils: QoS profiles per purpose, parameter specs and their descriptors, bad parameters at start."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from rcl_interfaces.msg import ParameterType
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from openhelix_ros.common.node_utils import (
    ANY_PUBLISHER_QOS,
    ESTOP_QOS,
    LATENT_PUBLISHER_QOS,
    LATENT_SUBSCRIBER_QOS,
    SENSOR_QOS,
    TRAJECTORY_QOS,
    ParameterSpec,
)


def test_qos_profiles_follow_the_design():
    assert SENSOR_QOS.reliability == ReliabilityPolicy.BEST_EFFORT and 1 <= SENSOR_QOS.depth <= 5
    # The writer keeps the newest for late joiners; the exact-Asy(N) reader keeps more than one.
    assert LATENT_PUBLISHER_QOS.reliability == ReliabilityPolicy.RELIABLE and LATENT_PUBLISHER_QOS.depth == 1
    assert LATENT_SUBSCRIBER_QOS.reliability == ReliabilityPolicy.RELIABLE and LATENT_SUBSCRIBER_QOS.depth >= 2
    assert LATENT_PUBLISHER_QOS.durability == LATENT_SUBSCRIBER_QOS.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert TRAJECTORY_QOS.reliability == ReliabilityPolicy.RELIABLE and TRAJECTORY_QOS.depth == 1
    assert TRAJECTORY_QOS.durability == DurabilityPolicy.VOLATILE
    # The estop is a latched state: never lost on the way, and heard by an arm that starts after the press.
    assert ESTOP_QOS.reliability == ReliabilityPolicy.RELIABLE and ESTOP_QOS.depth == 1
    assert ESTOP_QOS.durability == DurabilityPolicy.TRANSIENT_LOCAL
    # Operator tools of any kind are heard: best effort and volatile accept every publisher.
    assert ANY_PUBLISHER_QOS.reliability == ReliabilityPolicy.BEST_EFFORT
    assert ANY_PUBLISHER_QOS.durability == DurabilityPolicy.VOLATILE


def test_parameter_spec_descriptors():
    speed = ParameterSpec("max_speed", 1.0, "Speed limit (m/s).", read_only=True, value_range=(0.0, 2.0))
    descriptor = speed.descriptor()
    assert descriptor.type == ParameterType.PARAMETER_DOUBLE and descriptor.read_only
    assert descriptor.description == "Speed limit (m/s)."
    assert (descriptor.floating_point_range[0].from_value, descriptor.floating_point_range[0].to_value) == (0.0, 2.0)
    count = ParameterSpec("count", 3, "How many.", value_range=(1, 10)).descriptor()
    assert count.type == ParameterType.PARAMETER_INTEGER and count.integer_range[0].to_value == 10
    assert ParameterSpec("names", ["a"], "Names.").parameter_type() == ParameterType.PARAMETER_STRING_ARRAY
    assert ParameterSpec("xs", [0.5], "Values.").parameter_type() == ParameterType.PARAMETER_DOUBLE_ARRAY
    with pytest.raises(ValueError, match="give a type for an empty list"):
        ParameterSpec("empty", [], "Nothing.").parameter_type()


@pytest.mark.parametrize("parameter, message", [
    ("workspace_low:=[1.0, 0.0, 0.0]", "every low must be below its high"),
    ("max_linear_speed:=5.0", "max_linear_speed out of range"),
])
def test_bad_parameters_stop_the_node_with_a_clear_message(parameter, message):
    script = Path(sys.executable).parent / "arm_interface"
    result = subprocess.run([str(script), "--ros-args", "-p", parameter], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "[FATAL] cannot start" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("calvin_env") is not None, reason="calvin_env is installed here")
def test_the_calvin_backend_without_calvin_env_is_a_clear_configuration_error():
    script = Path(sys.executable).parent / "calvin_bridge"
    result = subprocess.run([str(script), "--ros-args", "-p", "backend:=calvin", "-p", "render:=false"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "[FATAL] cannot start" in result.stderr and "needs calvin_env" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_node_runs_in_the_environment_it_was_given():
    """run_node leaves ROS_HOME and the discovery range to its caller (the openhelix verbs and the
    Makefile set the project's defaults): under ros2 launch on a robot's network a node must reach
    drivers on other machines."""
    import os

    code = ("import os, sys\nfrom openhelix_ros.common.node_utils import run_node\n"
            "def make():\n    print('ROS_HOME', os.environ.get('ROS_HOME'), flush=True)\n"
            "    raise ValueError('enough')\n"
            "sys.exit(run_node(make, []))\n")
    env = {key: value for key, value in os.environ.items() if key not in ("ROS_HOME", "ROS_LOG_DIR")}
    env["ROS_LOG_DIR"] = os.environ["ROS_LOG_DIR"]  # rcl's logs still go to the test's directory
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "enough" in done.stderr
    assert "ROS_HOME None" in done.stdout


def test_a_node_is_built_in_the_thread_that_runs_its_callbacks():
    """A GL context belongs to the thread that made it: calvin_env's EGL renderer, made with the bridge's
    simulator in the node's constructor, rendered the near plane as depth when steps and resets ran in
    another thread. So run_node builds the node in its executor's thread."""
    code = ("import os, signal, sys, threading\nfrom rclpy.node import Node\n"
            "from openhelix_ros.common.node_utils import run_node\n"
            "class Probe(Node):\n"
            "    def __init__(self):\n"
            "        super().__init__('thread_probe')\n"
            "        self.built_in = threading.get_ident()\n"
            "        self.create_timer(0.05, self.tick)\n"
            "    def tick(self):\n"
            "        print('same thread', threading.get_ident() == self.built_in, flush=True)\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.exit(run_node(Probe, []))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "same thread True" in done.stdout
