"""The launch files run by the real ROS 2 launch system with non-default arguments; every node's
effective parameters are then read over the ROS parameter services. This is the test that would have
caught ``checkpoint:=`` being ignored (launch_ros's ``/**`` overrides losing to the nodes' own files).

It needs what a full ROS 2 install has and no registry carries: launch, launch_ros, and this workspace
installed (colcon) so that share/openhelix and lib/openhelix_ros/<executable> are in the ament index.
Elsewhere it skips; tests/graph/common/test_launch_graphs.py starts the same graph declarations without launch.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from support.graphs import SHIPPED, GraphCommand, parameter_values, say

from openhelix_msgs.msg import EETrajectory
from openhelix_ros.common import graph
from openhelix_ros.common.node_utils import TRAJECTORY_QOS
from openhelix_ros.common.processes import topic_has_publishers


def _installed_share() -> Path | None:
    if importlib.util.find_spec("launch_ros") is None or importlib.util.find_spec("launch") is None:
        return None
    try:
        from ament_index_python.packages import get_package_prefix, get_package_share_directory

        share = Path(get_package_share_directory("openhelix"))
        prefix = Path(get_package_prefix("openhelix_ros"))
    except (ImportError, LookupError, ValueError):
        return None
    return share if (prefix / "lib" / "openhelix_ros" / "system1").exists() else None


SHARE = _installed_share()
pytestmark = [
    pytest.mark.skipif(SHARE is None, reason="needs the ROS 2 launch system (launch, launch_ros) and this "
                       "workspace installed with colcon; no registry carries launch_ros"),
    pytest.mark.slow,
    pytest.mark.timeout(420),
]
PEER = Path(__file__).resolve().parents[2] / "peers" / "launch_file.py"


def start_launch(processes, file: str, assignments: list[str]) -> GraphCommand:
    """``ros2 launch openhelix <file> name:=value ...``, stopped with Ctrl-C."""
    return processes.command([sys.executable, str(PEER), str(SHARE / "launch" / file), *assignments],
                             label="launch", kind=GraphCommand)


def test_sim_launch_honours_every_argument_and_plans_after_an_instruction(peer, processes):
    trajectories = []
    peer.create_subscription(EETrajectory, graph.EE_TRAJECTORY, trajectories.append, TRAJECTORY_QOS)
    launch = start_launch(processes, "sim.launch.py", [f"checkpoint:={SHIPPED}", "system2_model:=tiny",
                                                       "system1_model:=tiny", "latent_period_steps:=5",
                                                       "backend:=embedded"])
    try:
        launch.wait_for(peer, lambda: all(topic_has_publishers(peer, t) for t in (graph.EE_TRAJECTORY,
                                                                                 graph.GOAL_LATENT)),
                        300, "System 1 and System 2")
        for node in ("system1", "system2"):
            assert parameter_values(peer, node, ["checkpoint", "model", "latent_period_steps"]) == \
                {"checkpoint": str(SHIPPED), "model": "tiny", "latent_period_steps": 5}, node
        assert f"model {SHIPPED}" in launch.text()
        result = say("close the drawer", "close_drawer")  # no reset_scene first
        assert result.returncode == 0, result.stdout + result.stderr
        launch.wait_for(peer, lambda: len(trajectories) >= 3, 60, "plans after the instruction")
    finally:
        launch.stop()


def test_eval_launch_honours_runs_dir_and_the_models(peer, tmp_path, processes):
    launch = start_launch(processes, "eval.launch.py", ["system2_model:=tiny", "system1_model:=tiny",
                                                        f"runs_dir:={tmp_path}", "latent_period_steps:=4"])
    try:
        launch.wait_for(peer, lambda: "evaluator" in peer.get_node_names(), 120, "the evaluator")
        assert parameter_values(peer, "evaluator", ["runs_dir", "latent_period_steps"]) == \
            {"runs_dir": str(tmp_path), "latent_period_steps": 4}
        assert parameter_values(peer, "system1", ["model", "checkpoint"]) == {"model": "tiny", "checkpoint": ""}
    finally:
        launch.stop()


def test_record_launch_honours_backend_output_and_the_demonstrator(peer, tmp_path, processes):
    bag = tmp_path / "episode"
    launch = start_launch(processes, "record.launch.py", [f"output:={bag}", "policy:=teleop", "backend:=embedded"])
    try:
        launch.wait_for(peer, lambda: {"recorder", "teleop"} <= set(peer.get_node_names()), 120, "the nodes")
        assert parameter_values(peer, "recorder", ["output"]) == {"output": str(bag)}
        assert parameter_values(peer, "calvin_bridge", ["backend", "publish_points_every_step"]) == \
            {"backend": "embedded", "publish_points_every_step": True}
        assert "scripted_expert" not in peer.get_node_names()
    finally:
        launch.stop()
    assert (bag / "metadata.yaml").is_file(), "the recorder closed no bag"


def test_robot_launch_honours_the_models_and_remaps_every_cell_topic(peer, processes):
    launch = start_launch(processes, "robot.launch.py", ["system2_model:=tiny", "system1_model:=tiny",
                                                         "estop:=/cell/estop", "gripper_command:=/cell/gripper",
                                                         "points:=/cell/points"])
    try:
        launch.wait_for(peer, lambda: {"arm_interface", "system1"} <= set(peer.get_node_names()), 120, "the nodes")
        assert parameter_values(peer, "system1", ["model", "clock_mode"]) == {"model": "tiny", "clock_mode": "realtime"}

        def wired() -> bool:
            subscribers = {i.node_name for i in peer.get_subscriptions_info_by_topic("/cell/estop")}
            publishers = {i.node_name for i in peer.get_publishers_info_by_topic("/cell/gripper")}
            clouds = {i.node_name for i in peer.get_subscriptions_info_by_topic("/cell/points")}
            return "arm_interface" in subscribers and "arm_interface" in publishers and "system1" in clouds

        launch.wait_for(peer, wired, 60, "the remapped topics")
    finally:
        launch.stop()


def test_rviz_without_rviz2_is_refused_before_anything_starts(peer, processes):
    from openhelix_ros.common.graphs import rviz_executable

    if rviz_executable() is not None:
        pytest.skip("rviz2 is installed here")
    launch = start_launch(processes, "sim.launch.py", ["rviz:=true", "system2_model:=tiny", "system1_model:=tiny"])
    status = launch.wait(timeout=60)
    assert status != 0 and "rviz2 is not installed" in launch.text() and "Nothing was started" in launch.text()
    assert not {"calvin_bridge", "system1", "system2"} & set(peer.get_node_names())
