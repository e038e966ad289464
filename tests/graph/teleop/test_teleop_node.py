"""The teleop node as a real process in front of a real bridge: a twist from another process moves the
simulated arm that way, stopping the twist stops it (dead man's switch), the gripper follows its topic,
and a bad twist is refused with a log line while the node stays up. In both clock modes."""

from __future__ import annotations

import os
import pty
import sys
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from std_msgs.msg import Bool

from openhelix_msgs.msg import SceneState
from openhelix_ros.common import graph
from openhelix_ros.common.node_utils import SCENE_STATE_QOS
from openhelix_ros.common.processes import wait_for


@pytest.mark.parametrize("clock_mode", ["lockstep", "realtime"])
def test_twist_moves_the_arm_and_stopping_it_stops_the_arm(peer, processes, clock_mode):
    horizon = 1 if clock_mode == "lockstep" else 3
    bridge = processes.node("calvin_bridge", f"clock_mode:={clock_mode}", "render:=false")
    teleop = processes.node("teleop", f"clock_mode:={clock_mode}", f"horizon:={horizon}", "command_timeout:=0.3")
    watched = [bridge, teleop]
    states: list[SceneState] = []
    subscription = peer.create_subscription(SceneState, graph.SCENE_STATE, states.append, SCENE_STATE_QOS)
    twist_pub = peer.create_publisher(Twist, graph.TELEOP_TWIST, 10)
    gripper_pub = peer.create_publisher(Bool, graph.TELEOP_GRIPPER, 10)
    command = {"twist": None}

    def send_twist() -> None:  # a device streams its twist at 20 Hz while a key or stick is held
        if command["twist"] is not None:
            twist_pub.publish(command["twist"])

    timer = peer.create_timer(0.05, send_twist)
    try:
        wait_for(peer, lambda: twist_pub.get_subscription_count() > 0 and gripper_pub.get_subscription_count() > 0
                 and len(states) > 3, 60, "the teleop node and the bridge's steps", watched)

        def tcp() -> np.ndarray:
            return np.asarray(states[-1].robot_obs[:3])

        start = tcp()
        # The world moves on with no command (the teleop node answers every step) and the arm holds.
        step = states[-1].step
        wait_for(peer, lambda: states[-1].step >= step + 15, 60, "steps without a command", watched)
        assert np.abs(tcp() - start).max() < 0.005

        # +x at 0.1 m/s: the arm goes right, not elsewhere.
        command["twist"] = Twist()
        command["twist"].linear.x = 0.1
        wait_for(peer, lambda: tcp()[0] - start[0] > 0.03, 60, "the arm to move 3 cm along +x", watched)
        moved = tcp() - start
        assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, moved

        # No more twists: after command_timeout the target stands still and the arm settles there.
        command["twist"] = None
        step = states[-1].step
        wait_for(peer, lambda: states[-1].step >= step + 45, 60, "steps after the last twist", watched)
        recent = np.array([s.robot_obs[0] for s in states[-15:]])
        assert recent.max() - recent.min() < 0.002, recent

        # The gripper topic closes the gripper (robot_obs[14], the gripper action, goes to -1).
        gripper_pub.publish(Bool(data=True))
        wait_for(peer, lambda: states[-1].robot_obs[14] < 0, 60, "the gripper to close", watched)

        # A NaN twist is refused by name; the node stays up and the world keeps stepping.
        bad = Twist()
        bad.angular.z = float("nan")
        twist_pub.publish(bad)
        wait_for(peer, lambda: "twist angular contains NaN" in teleop.output(), 30, "the NaN twist's log line",
                 watched)
        step = states[-1].step
        wait_for(peer, lambda: states[-1].step >= step + 5, 60, "steps after the bad twist", watched)
        assert teleop.alive and bridge.alive
    finally:
        peer.destroy_timer(timer)
        peer.destroy_subscription(subscription)
        peer.destroy_publisher(twist_pub)
        peer.destroy_publisher(gripper_pub)
        processes.stop_all()
    assert "holding the pose" not in bridge.output(), bridge.output()[-2000:]


def test_openhelix_teleop_verb_drives_a_running_graph_from_a_terminal(peer, processes):
    watched = [processes.node("calvin_bridge", "clock_mode:=realtime", "render:=false"),
               processes.node("teleop", "clock_mode:=realtime", "horizon:=3")]
    states: list[SceneState] = []
    subscription = peer.create_subscription(SceneState, graph.SCENE_STATE, states.append, SCENE_STATE_QOS)
    master, slave = pty.openpty()
    keyboard = processes.command([Path(sys.executable).parent / "openhelix", "teleop"], label="openhelix-teleop",
                                 stdin=slave)
    os.close(slave)
    try:
        wait_for(peer, lambda: len(states) > 3 and peer.count_publishers(graph.TELEOP_TWIST) > 0, 60,
                 "the bridge's steps and the keyboard's publisher", watched)
        start = np.asarray(states[-1].robot_obs[:3])

        def up_by(metres: float) -> bool:
            os.write(master, b"r")  # held: repeated about 20 times a second
            return states[-1].robot_obs[2] - start[2] > metres

        wait_for(peer, lambda: up_by(0.03), 60, "the arm to rise 3 cm", watched)
        os.write(master, b"q")
        assert keyboard.wait(timeout=30) == 0
    finally:
        os.close(master)
        peer.destroy_subscription(subscription)
        processes.stop_all()
    assert "w/s forward/back" in keyboard.output()  # it told the person the keys
