"""The arm_interface node as a real process: IK output checked with pybullet's Panda, the safety
filter, rejection of bad trajectories, and the estop hold."""

from __future__ import annotations

import json
import signal

import numpy as np
import pybullet
import pybullet_data
import pytest
from support.processes import Processes

from openhelix_ros.arm.kinematics import JOINT_NAMES, JOINT_UPPER, READY_JOINTS
from openhelix_ros.common.processes import wait_for

BASE_POSITION = [0.0, -0.52, 0.0]
BASE_ORIENTATION = [0.0, 0.0, 0.7071067811865476, 0.7071067811865476]
TCP_OFFSET = 0.105  # pybullet_data's panda_grasptarget, so pybullet can check the joints independently
PYBULLET_TCP_LINK = 11


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Run the arm_interface and the driver peer once; return (what the driver received, node log)."""
    directory = tmp_path_factory.mktemp("arm")
    with Processes(directory) as processes:
        node = processes.node(
            "openhelix_ros.arm.node", f"base_position:={BASE_POSITION}", f"base_orientation:={BASE_ORIENTATION}",
            f"tcp_offset:={TCP_OFFSET}", "joint_state_timeout:=0.5",
            # x stops at 0.45 m: comfortably inside the arm's reach, so clipping (not reach) is tested.
            "workspace_high:=[0.45, 0.36, 0.65]")
        out = directory / "received.json"
        driver = processes.peer("arm_driver.py", "--out", str(out), "--base-position", *map(str, BASE_POSITION),
                                "--base-orientation", *map(str, BASE_ORIENTATION), "--tcp-offset", str(TCP_OFFSET),
                                ready=None)
        driver_code = driver.wait(timeout=240)
        alive = node.alive
        # The driver's last trajectory (7) is judged after a wait for fresh joint states and may still be
        # queued behind earlier planning when the driver exits: wait for its verdict in the log (by
        # content, not by clock) before stopping the node, or a loaded machine loses the line.
        if alive and driver_code == 0:
            wait_for(None, lambda: "trajectory 7 " in node.output(), 60, "the node's verdict on trajectory 7")
        assert node.stop(timeout=10) != -signal.SIGKILL, "arm_interface did not stop within 10 s:\n" + node.output()
        text = node.output()
        assert driver_code == 0, f"driver failed:\n{driver.output()}\nnode log:\n{text}"
    assert alive, "arm_interface died during the scenario:\n" + text
    return json.loads(out.read_text()), text


@pytest.fixture(scope="module")
def pybullet_tcp():
    client = pybullet.connect(pybullet.DIRECT)
    robot = pybullet.loadURDF(pybullet_data.getDataPath() + "/franka_panda/panda.urdf", BASE_POSITION,
                              BASE_ORIENTATION, useFixedBase=True, physicsClientId=client)

    def tcp(joints):
        for index, value in enumerate(joints):
            pybullet.resetJointState(robot, index, value, physicsClientId=client)
        return np.array(pybullet.getLinkState(robot, PYBULLET_TCP_LINK, computeForwardKinematics=True,
                                              physicsClientId=client)[4])

    yield tcp
    pybullet.disconnect(client)


def trajectories(data, step, points=None):
    return [m for m in data["received"]["joint_trajectory"]
            if m["step"] == step and (points is None or len(m["positions"]) == points)]


def test_valid_trajectory_becomes_a_joint_trajectory_pybullet_agrees_with(session, pybullet_tcp):
    data, _ = session
    (command,) = trajectories(data, "valid")
    assert command["names"] == list(JOINT_NAMES)
    assert command["times"] == pytest.approx([0.1 * (i + 1) for i in range(10)], abs=1e-6)
    targets = np.array(data["start_position"]) + np.array(data["valid_offsets"])
    for joints, target in zip(command["positions"], targets, strict=True):
        assert np.linalg.norm(pybullet_tcp(joints) - target) < 1e-3
    assert np.abs(np.diff(np.vstack([READY_JOINTS, command["positions"]]), axis=0)).max() < 0.1


def test_target_pose_streams_waypoints_in_the_base_frame(session):
    data, _ = session
    poses = [p for p in data["received"]["target_pose"] if p["step"] == "valid"]
    assert len(poses) >= 5 and all(p["frame"] == "panda_link0" for p in poses)
    # The base faces +y, so world +x is base -y; the stream starts at the first waypoint.
    first_world = np.array(data["start_position"]) + np.array(data["valid_offsets"][0])
    first_base = [first_world[1] - BASE_POSITION[1], -(first_world[0] - BASE_POSITION[0]), first_world[2]]
    assert poses[0]["position"] == pytest.approx(first_base, abs=1e-6)
    ys = [p["position"][1] for p in poses]
    assert ys == sorted(ys, reverse=True)  # moving along base -y as time passes


def test_gripper_commands_reach_a_forward_command_controller_on_change(session):
    data, _ = session
    commands = data["received"]["gripper_command"]
    # The first plan opens (the controller's first command), the closing plan closes once, mid-way.
    assert [(c["step"], c["data"]) for c in commands[:2]] == [("valid", [0.04, 0.04]),
                                                              ("close_gripper", [0.0, 0.0])]
    assert all(c["data"] == [0.0, 0.0] for c in commands if c["step"] in ("nan", "unreachable"))


def test_bad_trajectories_are_rejected_with_a_reason(session):
    data, log = session
    assert not trajectories(data, "nan")
    assert "trajectory 2 rejected: trajectory positions contain NaN or infinite values at waypoint(s) [4]" in log
    assert not trajectories(data, "unreachable")
    assert "trajectory 3 rejected: waypoint" in log and "unreachable" in log
    assert not trajectories(data, "bad_joint_states")
    assert "joint_states dropped: joint state has NaN or infinite position for panda_joint4" in log
    assert "trajectory 7 rejected: newest joint_states is" in log


def test_out_of_bounds_trajectory_is_clipped_and_slowed(session, pybullet_tcp):
    data, log = session
    (command,) = trajectories(data, "out_of_bounds", 10)
    assert "trajectory 4 adjusted by the safety filter: 10 waypoint(s) clipped to the workspace" in log
    xs = [pybullet_tcp(joints)[0] for joints in command["positions"]]
    assert max(xs) == pytest.approx(0.45, abs=1e-3)  # workspace_high x
    steps = np.diff([data["start_position"][0], *xs])
    assert steps.max() <= 1.0 * 0.1 + 1e-3  # 1 m/s at 0.1 s per waypoint


def test_estop_holds_and_ignores_trajectories_until_released(session):
    data, log = session
    holds = trajectories(data, "estop_on")
    assert len(holds) >= 3 and all(len(h["positions"]) == 1 for h in holds)
    assert holds[0]["positions"][0] == pytest.approx(READY_JOINTS.tolist())
    assert all(len(m["positions"]) == 1 for m in trajectories(data, "during_estop"))  # holds only
    assert "ESTOP pressed: holding joints" in log
    # The estop is pressed while the node may still be failing IK on trajectory 8; planning runs on its
    # own executor thread, so the hold above does not queue behind it. How fast it comes out is a
    # timing (data["hold_latency"]), measured rather than asserted: how long that IK runs depends on
    # the machine, so no ordering or time limit here would be reliable.
    # The log line is throttled per call site, so the line may name trajectory 8 (queued behind its IK)
    # rather than 5; what matters is asserted above: only holds came out during the estop.
    assert "ignored: the arm holds (ESTOP pressed)" in log
    assert "ESTOP released" in log
    assert len(trajectories(data, "after_estop", 10)) == 1
    held_poses = [p for p in data["received"]["target_pose"] if p["step"] == "estop_on"]
    assert held_poses and held_poses[-1]["frame"] == "panda_link0"
    assert np.all(READY_JOINTS <= JOINT_UPPER)
