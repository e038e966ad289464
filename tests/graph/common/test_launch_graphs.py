"""The launch files' graphs started for real (``openhelix up``, the same declarations ros2 launch builds
from): every node's effective parameters, read back over the ROS parameter services, are the launch
arguments given; and an instruction after the graph is up leads to plans without a manual reset_scene,
whichever node came up last, in both clock modes."""

from __future__ import annotations

import time

import pytest
import rclpy
from support.graphs import OPENHELIX, SHIPPED, GraphCommand, parameter_values, say

from openhelix_msgs.msg import EETrajectory, GoalLatent
from openhelix_ros.common import graph
from openhelix_ros.common.graphs import SIM
from openhelix_ros.common.node_utils import LATENT_SUBSCRIBER_QOS, TRAJECTORY_QOS
from openhelix_ros.common.processes import start_node, stop_all, topic_has_publishers, wait_for


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.skipif(not (SHIPPED / "training_state.json").is_file(), reason="the shipped checkpoint is missing")
def test_up_sim_applies_every_argument_and_plans_after_an_instruction(peer, tmp_path, processes):
    """The issue's evidence was nodes reporting model embedded/default and checkpoint "" under
    checkpoint:=...; here every argument is non-default and read back from the running nodes."""
    trajectories, latents = [], []
    peer.create_subscription(EETrajectory, graph.EE_TRAJECTORY, trajectories.append, TRAJECTORY_QOS)
    peer.create_subscription(GoalLatent, graph.GOAL_LATENT, latents.append, LATENT_SUBSCRIBER_QOS)
    up = processes.command([OPENHELIX, "up", "sim", f"checkpoint:={SHIPPED}", "system2_model:=tiny",
                            "system1_model:=tiny", "latent_period_steps:=5", "clock_mode:=lockstep",
                            "backend:=embedded", "--log-dir", str(tmp_path / "logs")], label="up", kind=GraphCommand)
    try:
        up.wait_for(peer, lambda: all(topic_has_publishers(peer, t) for t in (graph.EE_TRAJECTORY,
                                                                                 graph.GOAL_LATENT)),
                    300, "System 1 and System 2 to load the checkpoint")
        for node in ("system1", "system2"):
            values = parameter_values(peer, node, ["checkpoint", "model", "latent_period_steps", "clock_mode"])
            assert values == {"checkpoint": str(SHIPPED), "model": "tiny", "latent_period_steps": 5,
                              "clock_mode": "lockstep"}, node
        assert parameter_values(peer, "calvin_bridge", ["backend", "clock_mode"]) == \
            {"backend": "embedded", "clock_mode": "lockstep"}
        # The nodes say what they loaded: the checkpoint, not the configuration named by model.
        for node in ("system1", "system2"):
            log = (tmp_path / "logs" / f"{node}.log").read_text()
            assert f"model {SHIPPED}" in log, log[-2000:]
        # System 2 (the embedded model of the checkpoint) finished loading long after the bridge published
        # step 0; no reset_scene: the instruction alone must lead to a latent and to plans.
        said = time.monotonic()
        result = say("close the drawer", "close_drawer")
        assert result.returncode == 0, result.stdout + result.stderr
        up.wait_for(peer, lambda: len(trajectories) >= 3, 60, "plans after the instruction")
        assert time.monotonic() - said < 30
        assert latents and latents[0].instruction == "close the drawer"
    finally:
        assert up.stop() == 0, up.text()[-3000:]
    assert "stopped sim" in up.text()
    # Ctrl-C on `openhelix up` stops every node it started.
    deadline = time.monotonic() + 20
    while {"calvin_bridge", "system1", "system2"} & set(peer.get_node_names()) and time.monotonic() < deadline:
        rclpy.spin_once(peer, timeout_sec=0.2)
    assert not {"calvin_bridge", "system1", "system2"} & set(peer.get_node_names())


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("clock_mode", ["lockstep", "realtime"])
def test_a_late_system2_still_gets_the_observation_and_the_graph_plans(peer, tmp_path, clock_mode):
    """Bridge and System 1 first, System 2 only once the bridge already waits on its first observation:
    an instruction must still lead to plans within seconds (the bridge re-sends what it waits on, and
    System 2 encodes the first image it gets for the period it missed)."""
    trajectories = []
    peer.create_subscription(EETrajectory, graph.EE_TRAJECTORY, trajectories.append, TRAJECTORY_QOS)
    nodes = {node.name: node for node in SIM.resolve({"system2_model": "tiny", "system1_model": "tiny",
                                                      "clock_mode": clock_mode},
                                                     extra={"calvin_bridge": {"render": True}})}
    logs = tmp_path / "logs"
    processes = [start_node(nodes["calvin_bridge"], log_dir=logs), start_node(nodes["system1"], log_dir=logs)]
    try:
        wait_for(peer, lambda: topic_has_publishers(peer, graph.EE_TRAJECTORY) and
                 topic_has_publishers(peer, graph.STATIC_IMAGE), 120, "the bridge and System 1", processes)
        time.sleep(3.0)  # the bridge has published step 0 (and re-sent it) to nobody who encodes images
        processes.append(start_node(nodes["system2"], log_dir=logs))
        wait_for(peer, lambda: topic_has_publishers(peer, graph.GOAL_LATENT), 120, "System 2", processes)
        said = time.monotonic()
        result = say("open the drawer", "open_drawer")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(peer, lambda: len(trajectories) >= 3, 30, "plans after the instruction", processes)
        assert time.monotonic() - said < 30
    finally:
        stop_all(processes)
    bridge_log = (logs / "calvin_bridge.log").read_text()
    assert "holding the pose" not in bridge_log, bridge_log[-2000:]


def test_up_refuses_rviz_without_rviz2_before_starting_anything(tmp_path):
    import subprocess

    from openhelix_ros.common.graphs import rviz_executable

    if rviz_executable() is not None:
        pytest.skip("rviz2 is installed here")
    done = subprocess.run([OPENHELIX, "up", "sim", "rviz:=true", "--log-dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "rviz2 is not installed" in done.stderr and "Nothing was started" in done.stderr
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*.log"))
