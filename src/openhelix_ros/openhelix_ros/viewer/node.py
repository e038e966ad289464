"""The viewer's ROS side: a node that subscribes to the graph with its own QoS profiles and hands each
message, converted, to the ViewerCore; a timer draws the core's frame into viser.

It never slows the graph: sensors are read best effort (a reliable writer does not wait for a
best-effort reader), each subscription keeps only what the graph's profile keeps, and callbacks only
convert and store the newest (no queue); drawing runs on a timer at ``draw_rate``.
"""

from __future__ import annotations

import threading
import time

from rclpy.node import Node

from openhelix_msgs.msg import Instruction
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    image_to_array,
    make_header,
    pointcloud2_to_points,
    pose_stamped_from_msg,
    trajectory_from_msg,
)
from openhelix_ros.common.messages import message_class
from openhelix_ros.common.node_utils import (
    INSTRUCTION_PUBLISHER_QOS,
    LATENT_SUBSCRIBER_QOS,
    PROGRESS_QOS,
    SENSOR_QOS,
    TRAJECTORY_QOS,
    get_remote_parameters,
    subscribe_instructions,
)
from openhelix_ros.viewer.core import Progress, ViewerCore
from openhelix_ros.viewer.scene import ViewerScene

NODE_NAME = "openhelix_viewer"
SYSTEM2_NODE = "system2"  # whose latent_period_steps sets the Asy(N) window shown


def joint_positions(message) -> dict[str, float]:
    """A JointState's named positions; ValueError when names and positions disagree."""
    if len(message.position) != len(message.name):
        raise ValueError(f"joint state has {len(message.name)} names but {len(message.position)} positions")
    return dict(zip(message.name, (float(p) for p in message.position), strict=True))


# topic -> the QoS profile (types: graph.py) of everything the viewer reads but instructions (two readers,
# see node_utils.subscribe_instructions). Sensors best effort: the graph's writers never wait for the viewer.
VIEWED_TOPICS = {
    graph.POINTS: SENSOR_QOS,
    graph.JOINT_STATES: SENSOR_QOS,
    graph.EE_POSE: SENSOR_QOS,
    graph.STATIC_IMAGE: SENSOR_QOS,
    graph.GRIPPER_IMAGE: SENSOR_QOS,
    graph.EE_TRAJECTORY: TRAJECTORY_QOS,
    graph.GOAL_LATENT: LATENT_SUBSCRIBER_QOS,
    graph.EVALUATION_PROGRESS: PROGRESS_QOS,
}


class MessageFeed:
    """Graph messages (rclpy types) into the core, one topic a handler, under ``lock``; the live node and
    the bag replay share it. A malformed message is counted and named in the status panel, never raised."""

    def __init__(self, core: ViewerCore, lock: threading.Lock | None = None) -> None:
        self.core = core
        self.lock = lock or threading.Lock()
        self.handlers = {
            graph.POINTS: self._on_points, graph.JOINT_STATES: self._on_joints, graph.EE_POSE: self._on_ee_pose,
            graph.STATIC_IMAGE: lambda m: self._on_image("static", m),
            graph.GRIPPER_IMAGE: lambda m: self._on_image("gripper", m),
            graph.EE_TRAJECTORY: self._on_trajectory, graph.GOAL_LATENT: self._on_latent,
            graph.EVALUATION_PROGRESS: self._on_progress, graph.INSTRUCTION: self._on_instruction,
        }

    def handle(self, topic: str, message) -> None:
        try:
            with self.lock:
                self.core.received[topic] += 1
                self.handlers[topic](message)
        except ValueError as error:
            with self.lock:
                self.core.on_refused(topic, str(error))

    def _on_points(self, message) -> None:
        cloud = pointcloud2_to_points(message)
        if cloud.rgb is None:
            raise ValueError("cloud has no rgb field")
        self.core.on_points(cloud.xyz, cloud.rgb, time.monotonic())

    def _on_joints(self, message) -> None:
        self.core.on_joints(joint_positions(message), time.monotonic())

    def _on_ee_pose(self, message) -> None:
        position, quaternion, _, _ = pose_stamped_from_msg(message)
        self.core.on_ee_pose(position, quaternion, time.monotonic())

    def _on_image(self, camera: str, message) -> None:
        rgb = image_to_array(message)
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError(f"{camera} image is {message.encoding}, not colour")
        self.core.on_image(camera, rgb[..., :3], time.monotonic())

    def _on_trajectory(self, message) -> None:
        plan = trajectory_from_msg(message)
        self.core.on_trajectory(plan.positions, plan.gripper, plan.stamp_ns, plan.latent_stamp_ns,
                                plan.inference_time, time.monotonic())

    def _on_latent(self, message) -> None:
        self.core.on_latent(float(message.inference_time), time.monotonic())

    def _on_instruction(self, message) -> None:
        self.core.on_instruction(message.text, message.task, time.monotonic())

    def _on_progress(self, message) -> None:
        self.core.on_progress(Progress(
            run_name=message.run_name, chain_index=int(message.chain_index), num_chains=int(message.num_chains),
            subtask_index=int(message.subtask_index), task=message.task, instruction=message.instruction,
            completed_in_chain=int(message.completed_in_chain), average_length=float(message.average_length)),
            time.monotonic())


class ViewerNode(Node):
    """Subscribes to one graph (the namespace it is created in) and draws it into ``scene``."""

    def __init__(self, core: ViewerCore, scene: ViewerScene, draw_rate: float = 10.0,
                 namespace: str | None = None) -> None:
        super().__init__(NODE_NAME, namespace=namespace or None)
        self.core, self.scene = core, scene
        self.feed = MessageFeed(core)
        self.lock = self.feed.lock
        self.closing = threading.Event()
        self.draws = 0
        for topic, qos in VIEWED_TOPICS.items():
            self.create_subscription(message_class(graph.topic_type(topic)), topic,
                                     lambda message, topic=topic: self.feed.handle(topic, message), qos)
        subscribe_instructions(self, lambda message: self.feed.handle(graph.INSTRUCTION, message))
        self.instruction_publisher = self.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
        self.draw_timer = self.create_timer(1.0 / draw_rate, self._draw)
        from rcl_interfaces.srv import GetParameters

        self._parameter_client = self.create_client(GetParameters, f"{SYSTEM2_NODE}/get_parameters")
        threading.Thread(target=self._read_latent_period, name="latent-period", daemon=True).start()

    def _draw(self) -> None:
        with self.lock:
            frame = self.core.frame(time.monotonic())
        self.scene.draw(frame)  # outside the lock: callbacks keep storing while viser serialises
        self.draws += 0 if frame.empty else 1

    def _read_latent_period(self) -> None:
        """System 2's Asy(N), retried while it is not up yet (a graph without System 2 leaves it unknown)."""
        while self.context.ok() and not self.closing.is_set():
            try:
                values, _ = get_remote_parameters(self._parameter_client, ["latent_period_steps"], timeout=2.0)
            except Exception:  # the node was destroyed under the wait: shutting down
                return
            if values is not None:
                with self.lock:
                    self.core.set_latent_period(int(values["latent_period_steps"]))
                return
            self.closing.wait(2.0)

    def destroy_node(self) -> None:
        self.closing.set()
        super().destroy_node()

    def say(self, text: str) -> str:
        """Send ``text`` as an instruction, as ``openhelix say`` does; what happened, for the panel."""
        from openhelix_ros.system2.core import check_instruction

        try:
            text = check_instruction(text)
        except ValueError as error:
            return f"Not sent: {error}"
        if self.instruction_publisher.get_subscription_count() == 0:
            return "Not sent: no node reads the instruction topic"
        self.instruction_publisher.publish(Instruction(
            header=make_header("", self.get_clock().now().nanoseconds), text=text, task="",
            sequence=time.time_ns() // 1_000_000))
        return f"Sent {text!r}"

