"""scripted_expert: demonstrations from privileged state, as a policy node of the graph.

Subscribes ``scene_state`` (openhelix_msgs/SceneState: robot_obs and scene_obs are all the scripted
expert reads) and ``instruction`` (its ``task`` id, or failing that its text, names the subtask).
Publishes ``ee_trajectory`` (openhelix_msgs/EETrajectory, latent_sequence 0: no latent was used)
stamped with the scene state it acted on, so a lockstep bridge takes it as the plan for that step.

It does not subscribe ``ee_pose``: SceneState.robot_obs already carries the TCP pose of the same step,
and pairing a second topic would only add a wait. The expert acts on every new scene state while it
has a task; a reset (the step counter going back) after it acted ends the task until the next
instruction (see expert/core.py). ``horizon`` > 1 repeats each action over that many waypoints, which
a realtime bridge needs (a one-waypoint plan is often past due by the time it arrives); lockstep
needs 1.
"""

from __future__ import annotations

import sys
import time

from rclpy.node import Node

from openhelix_msgs.msg import EETrajectory, Instruction, SceneState
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import stamp_to_ns, trajectory_to_msg
from openhelix_ros.common.node_utils import (
    SCENE_STATE_QOS,
    TRAJECTORY_QOS,
    declare_parameters,
    run_node,
    subscribe_instructions,
)
from openhelix_ros.expert.core import ExpertCore
from openhelix_ros.expert.parameters import PARAMETERS


class ScriptedExpertNode(Node):
    def __init__(self) -> None:
        super().__init__("scripted_expert")
        p = declare_parameters(self, PARAMETERS)
        self._core = ExpertCore(control_rate=p["control_rate"], horizon=p["horizon"], backend=p["backend"])
        self._sequence = 0
        self._publisher = self.create_publisher(EETrajectory, graph.EE_TRAJECTORY, TRAJECTORY_QOS)
        self.create_subscription(SceneState, graph.SCENE_STATE, self._on_scene_state, SCENE_STATE_QOS)
        subscribe_instructions(self, self._on_instruction)
        self.get_logger().info(f"scripted_expert ready: {p['backend']} scene ({self._core.geometry.name}), "
                               f"horizon {p['horizon']} at {p['control_rate']:g} Hz; "
                               f"waiting for an instruction")

    def _on_instruction(self, message: Instruction) -> None:
        try:
            task = self._core.set_instruction(message.text, message.task, message.sequence)
        except ValueError as error:
            self.get_logger().error(f"ignored instruction #{message.sequence} {message.text!r}: {error}")
            return
        self.get_logger().info(f"instruction #{message.sequence}: {task} ({message.text!r})")
        if self._core.pending:  # the newest observation is still waiting for its plan (lockstep)
            self._act()

    def _on_scene_state(self, message: SceneState) -> None:
        try:
            ended = self._core.observe(message.robot_obs, message.scene_obs, message.step,
                                       stamp_to_ns(message.header.stamp))
        except ValueError as error:
            self.get_logger().error(f"dropped {graph.SCENE_STATE} at step {message.step}: {error}")
            return
        if ended:
            self.get_logger().info("the scene was reset: task done, waiting for the next instruction")
        self._act()

    def _act(self) -> None:
        started = time.perf_counter()
        plan = self._core.act()
        if plan is None:
            return
        self._sequence += 1
        message = trajectory_to_msg(plan.positions, plan.quaternions, plan.gripper, plan.period,
                                    frame_id=graph.WORLD_FRAME, stamp=plan.stamp_ns, sequence=self._sequence,
                                    latent_sequence=0, latent_stamp=0,
                                    inference_time=time.perf_counter() - started)
        self._publisher.publish(message)


def main(args: list[str] | None = None) -> int:
    return run_node(ScriptedExpertNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
