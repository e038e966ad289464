"""The e-stop across processes: a latched stop holds an arm_interface that starts after it, a pendant
that goes away holds the arm, and a lossy heartbeat pendant's press and its death (kill -9) both stop it.

The arm_interface is a real process; the pendant is another (tests/peers/estop_pendant.py); joint states
come from this test's peer node, and the holds are read on ``joint_trajectory`` (a single point at the
held joints, at the control rate) and in the node's log.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from openhelix_ros.arm.kinematics import JOINT_NAMES, READY_JOINTS
from openhelix_ros.common.processes import wait_for

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def robot(peer):
    """The peer as the robot: joint_states at 50 Hz while spun; the arm's joint_trajectory collected."""
    received: list[tuple[float, JointTrajectory]] = []
    publisher = peer.create_publisher(JointState, "joint_states", RELIABLE)
    state = JointState(name=list(JOINT_NAMES) + ["panda_finger_joint1", "panda_finger_joint2"],
                       position=READY_JOINTS.tolist() + [0.04, 0.04])
    timer = peer.create_timer(0.02, lambda: publisher.publish(state))
    subscription = peer.create_subscription(JointTrajectory, "joint_trajectory",
                                            lambda m: received.append((time.monotonic(), m)), RELIABLE)
    yield received
    peer.destroy_timer(timer)
    peer.destroy_subscription(subscription)
    peer.destroy_publisher(publisher)


def holds_since(received, since: float) -> int:
    return sum(1 for at, m in received if at >= since and len(m.points) == 1)


def spin_for(peer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(peer, timeout_sec=0.02)


def send(pendant, command: str) -> None:
    pendant.popen.stdin.write(f"{command}\n".encode())
    pendant.popen.stdin.flush()


def test_a_latched_stop_holds_a_late_arm_and_a_pendant_that_goes_away_holds_it_again(peer, robot, processes):
    reports: list[DiagnosticArray] = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", reports.append, RELIABLE)
    pendant = processes.peer("estop_pendant.py", "--state", "pressed", stdin=subprocess.PIPE)
    # The arm starts after the press was published once: only a latched (transient local) stop reaches it.
    arm = processes.node("arm_interface", "estop_watch:=lost", ready="arm_interface ready")
    wait_for(peer, lambda: holds_since(robot, 0.0) >= 3, 60, "the hold of a stop pressed before the arm started",
             [arm])
    # The latched press may come before the first joint_states: then the hold begins with them.
    assert "ESTOP pressed" in arm.output() and "holding joints" in arm.output()
    assert list(robot[-1][1].points[0].positions) == pytest.approx(READY_JOINTS.tolist())
    # An operator sees why on /diagnostics: the node's status is WARN with the reason.
    def holding_reported() -> bool:
        return any(status.name == "arm_interface: node" and status.level == b"\x01"
                   and "estop: holding: ESTOP pressed" in status.message
                   for array in reports for status in array.status)

    wait_for(peer, holding_reported, 30, "the hold on /diagnostics", [arm])

    send(pendant, "release")
    arm.wait_for_line("ESTOP released", 30)
    released = time.monotonic()
    spin_for(peer, 1.0)
    assert holds_since(robot, released + 0.2) == 0, "still holding after the release"

    # The pendant's node ends (unplugged): no one could stop the arm any more, so it holds.
    assert pendant.stop(signal.SIGINT, timeout=15) == 0, pendant.output()
    wait_for(peer, lambda: "the estop publisher went away" in arm.output(), 30, "the hold for a lost pendant", [arm])
    gone = time.monotonic()
    wait_for(peer, lambda: holds_since(robot, gone) >= 3, 30, "holds after the pendant went away", [arm])

    # A pendant back, released: the arm may move again.
    processes.peer("estop_pendant.py", "--state", "released", label="pendant-2")
    wait_for(peer, lambda: arm.output().count("ESTOP released") >= 2, 30, "the release by the new pendant", [arm])
    assert arm.alive


def test_a_lossy_heartbeat_pendant_still_stops_the_arm_and_its_death_holds_it(peer, robot, processes):
    # 30 % of the messages deliberately lost, presses included; 10 Hz heartbeat, estop_timeout 1 s.
    pendant = processes.peer("estop_pendant.py", "--state", "released", "--rate", "10", "--drop", "0.3",
                             "--seed", "7", stdin=subprocess.PIPE)
    arm = processes.node("arm_interface", "estop_watch:=lost", "estop_timeout:=1.0", ready="arm_interface ready")
    spin_for(peer, 2.0)
    assert holds_since(robot, 0.0) == 0, "held while a released pendant was beating:\n" + arm.output()

    pressed_at = time.monotonic()
    send(pendant, "press")
    wait_for(peer, lambda: holds_since(robot, pressed_at) >= 3, 30, "the hold for a press over a lossy link", [arm])
    print(f"lossy press to hold: {robot[-3][0] - pressed_at:.3f} s; pendant dropped "
          f"{pendant.output().count('DROPPED')} of {pendant.output().count('SENT') + pendant.output().count('DROPPED')}")
    send(pendant, "release")
    wait_for(peer, lambda: "ESTOP released" in arm.output(), 30, "the release", [arm])

    # kill -9: DDS would notice after its lease (~20 s); the missing heartbeat holds within estop_timeout.
    killed_at = time.monotonic()
    pendant.send_signal(signal.SIGKILL)
    wait_for(peer, lambda: "no estop message for" in arm.output(), 30, "the hold for a dead pendant", [arm])
    wait_for(peer, lambda: holds_since(robot, killed_at) >= 3, 30, "holds after the pendant died", [arm])
    print(f"kill -9 to hold: {next(at for at, m in robot if at >= killed_at and len(m.points) == 1) - killed_at:.3f} s")
    assert arm.alive
