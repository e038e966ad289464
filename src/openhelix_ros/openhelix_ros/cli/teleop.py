"""``openhelix teleop``: drive the arm of a running graph from the terminal's keyboard.

Publishes ``teleop/twist`` (geometry_msgs/Twist) and ``teleop/gripper`` (std_msgs/Bool) for the teleop
node (``ros2 launch openhelix record.launch.py policy:=teleop``, or ``openhelix collect --teleop
keyboard``, which uses the same :class:`KeyboardOperator` in its own process). Keys:
``teleop.core.KEYBOARD_HELP``. The terminal is put in cbreak mode (keys arrive without Enter, not
echoed) and restored on exit.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import termios
import threading
import tty
from dataclasses import dataclass

from openhelix_ros.teleop.core import KEYBOARD_HELP, KeyboardTeleop


class TerminalKeys:
    """Keys typed on a terminal, one character at a time, read by a background thread.

    Use as a context manager: the terminal's settings are restored on exit whatever happens.
    """

    def __init__(self, stream=None):
        self._stream = stream if stream is not None else sys.stdin
        self._keys: queue.Queue[str] = queue.Queue()
        self._saved = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TerminalKeys:
        fd = self._stream.fileno()
        if not os.isatty(fd):
            raise RuntimeError("keyboard tele-operation needs a terminal on standard input (or use "
                               "--teleop topic with a joystick or SpaceMouse driver publishing teleop/twist)")
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)  # keys without Enter and without echo; Ctrl-C still interrupts
        self._thread = threading.Thread(target=self._read, args=(fd,), name="terminal-keys", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            termios.tcsetattr(self._stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def _read(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:
                return
            for character in data.decode(errors="ignore"):
                self._keys.put(character)

    def pending(self) -> list[str]:
        """Every key typed since the last call, oldest first."""
        keys = []
        while True:
            try:
                keys.append(self._keys.get_nowait())
            except queue.Empty:
                return keys


@dataclass
class OperatorRequest:
    """What the person asked for besides motion since the last poll."""

    end_episode: bool = False
    quit: bool = False


class KeyboardOperator:
    """Turns keys into teleop/twist and teleop/gripper messages on ``node`` (an rclpy node)."""

    def __init__(self, node, keys: TerminalKeys, linear_speed: float = 0.1, angular_speed: float = 0.5):
        from geometry_msgs.msg import Twist
        from std_msgs.msg import Bool

        from openhelix_ros.common import graph

        self._twist_type, self._bool_type = Twist, Bool
        self._keys = keys
        self._keyboard = KeyboardTeleop(linear_speed, angular_speed)
        # Reliable: a key press is an event; the teleop node's best-effort readers match it too.
        self._twist_pub = node.create_publisher(Twist, graph.TELEOP_TWIST, 10)
        self._gripper_pub = node.create_publisher(Bool, graph.TELEOP_GRIPPER, 10)
        self.gripper_closed = False

    def new_episode(self) -> None:
        """Episodes start with an open gripper (the teleop node also takes it from the robot at a reset)."""
        self.gripper_closed = False

    def poll(self) -> OperatorRequest:
        """Publish what the keys typed since the last poll ask for; return the episode requests."""
        request = OperatorRequest()
        for key in self._keys.pending():
            event = self._keyboard.press(key)
            if event is None:
                continue
            if event.twist is not None:
                twist = self._twist_type()
                (twist.linear.x, twist.linear.y, twist.linear.z) = (float(v) for v in event.twist[0])
                (twist.angular.x, twist.angular.y, twist.angular.z) = (float(v) for v in event.twist[1])
                self._twist_pub.publish(twist)
            if event.toggle_gripper:
                self.gripper_closed = not self.gripper_closed
                self._gripper_pub.publish(self._bool_type(data=self.gripper_closed))
            request.end_episode |= event.end_episode
            request.quit |= event.quit
        return request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--linear-speed", type=float, default=0.1, help="m/s of a motion key (default 0.1)")
    parser.add_argument("--angular-speed", type=float, default=0.5, help="rad/s of a rotation key (default 0.5)")


def run(args: argparse.Namespace) -> int:
    import time

    import rclpy
    from rclpy.node import Node

    try:
        keys = TerminalKeys()
        with keys:
            rclpy.init()
            node = Node("openhelix_teleop_keyboard")
            try:
                operator = KeyboardOperator(node, keys, args.linear_speed, args.angular_speed)
                print(f"openhelix teleop: {KEYBOARD_HELP}", flush=True)
                while rclpy.ok():
                    if operator.poll().quit:
                        break
                    rclpy.spin_once(node, timeout_sec=0.02)
                    time.sleep(0.01)
            except KeyboardInterrupt:
                pass
            finally:
                node.destroy_node()
                rclpy.try_shutdown()
    except (RuntimeError, ValueError) as error:
        print(f"openhelix teleop: {error}", file=sys.stderr)
        return 2
    return 0
