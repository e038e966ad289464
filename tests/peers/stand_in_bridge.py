"""Peer process: a stand-in CALVIN bridge for the evaluator's cross-process tests.

A node named ``calvin_bridge`` with the real bridge's evaluation-facing interface and a deterministic
task rule instead of a simulator:

- ``reset_scene``: checks array lengths, sets the step counter to 0, answers the state;
- ``scene_state``: published at ``--rate`` Hz, ``step`` counting up from the last reset;
- ``check_tasks``: a task is completed ``--success-steps`` steps after ``start_state.step`` unless its
  name starts with one of ``--never`` (never completed); a task named in ``--refuse`` makes the call
  answer failure (an oracle error);
- parameter ``dynamic`` (set by the evaluator for CALVIN-D through the standard parameter service);
- ``instruction`` subscribed and logged;
- ``goal_latent`` / ``ee_trajectory`` as an Asy(10) pair would publish them: a latent from the
  observation of every 10th step, a trajectory every step using the latent of the previous period, all
  stamped with a step clock of 1/30 s that never resets (latent age 10..19 steps after the first period).

``--log PATH`` gets one JSON object per line for every reset, instruction and parameter change.
``--policy-when FILE`` creates the ee_trajectory publisher only once FILE exists (a slow-loading policy).
"""

import argparse
import json
import os
import sys
import time

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from openhelix_msgs.msg import EETrajectory, GoalLatent, Instruction, SceneState
from openhelix_msgs.srv import CheckTasks, ResetScene
from openhelix_ros.sim import TASKS

LATENT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
PERIOD_STEPS = 10


def stamp(step: int):
    from builtin_interfaces.msg import Time

    nanoseconds = round(step * 1e9 / 30)
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


class StandInBridge:
    def __init__(self, node, args):
        self.node, self.args = node, args
        self.step = 0          # since the last reset (SceneState.step)
        self.clock = 0         # steps since start, never reset: the stamps
        self.latent_sequence = 0
        self.trajectory_sequence = 0
        self.robot_obs, self.scene_obs = [0.0] * 15, [0.0] * 24
        self.log = open(args.log, "a") if args.log else None
        node.declare_parameter("dynamic", "")
        node.add_on_set_parameters_callback(self.on_parameters)
        node.create_service(ResetScene, "reset_scene", self.reset)
        node.create_service(CheckTasks, "check_tasks", self.check)
        node.create_subscription(Instruction, "instruction", self.on_instruction, RELIABLE)
        self.state_pub = node.create_publisher(SceneState, "scene_state", RELIABLE)
        self.latent_pub = node.create_publisher(GoalLatent, "goal_latent", LATENT_QOS)
        self.trajectory_pub = None
        if args.policy_when:  # a policy that takes a while to load, as a real model does
            self.policy_timer = node.create_timer(0.05, self.policy_up)
        else:
            self.policy_up()
        node.create_timer(1.0 / args.rate, self.tick)

    def policy_up(self):
        if self.args.policy_when and not os.path.exists(self.args.policy_when):
            return
        if self.trajectory_pub is None:
            self.trajectory_pub = self.node.create_publisher(EETrajectory, "ee_trajectory", RELIABLE)
            self.write(event="policy_up", time=time.time())
        if getattr(self, "policy_timer", None) is not None:
            self.policy_timer.cancel()

    def write(self, **event):
        if self.log:
            self.log.write(json.dumps(event) + "\n")
            self.log.flush()

    def on_parameters(self, parameters):
        for parameter in parameters:
            if parameter.name == "dynamic" and parameter.value not in ("", "left", "forward", "diagonal", "circle"):
                return SetParametersResult(successful=False, reason=f"unknown dynamic mode {parameter.value!r}")
        for parameter in parameters:
            self.write(event="parameter", name=parameter.name, value=parameter.value)
        return SetParametersResult(successful=True)

    def state(self) -> SceneState:
        message = SceneState(robot_obs=self.robot_obs, scene_obs=self.scene_obs, step=self.step)
        message.header.stamp = stamp(self.clock)
        message.header.frame_id = "world"
        return message

    def reset(self, request, response):
        for name, size in (("robot_obs", 15), ("scene_obs", 24)):
            if len(getattr(request, name)) not in (0, size):
                response.success, response.message = False, f"{name} must have {size} values or none"
                return response
        self.robot_obs = list(request.robot_obs) or [0.0] * 15
        self.scene_obs = list(request.scene_obs) or [0.0] * 24
        self.step = 0
        self.write(event="reset", seed=request.seed, use_seed=request.use_seed,
                   dynamic=self.node.get_parameter("dynamic").value, scene_obs=list(self.scene_obs))
        response.success, response.message, response.state = True, "reset", self.state()
        return response

    def check(self, request, response):
        unknown = [t for t in request.tasks if t not in TASKS]
        refused = [t for t in request.tasks if t in self.args.refuse]
        if unknown or refused:
            response.success = False
            response.message = (f"unknown task(s): {', '.join(unknown)}" if unknown
                                else f"stand-in oracle refuses {', '.join(refused)}")
            return response
        elapsed = self.step - request.start_state.step
        response.completed = [t for t in request.tasks if not t.startswith(tuple(self.args.never))
                              and elapsed >= self.args.success_steps]
        response.current_state = self.state()
        response.success, response.message = True, "checked"
        return response

    def on_instruction(self, message):
        self.write(event="instruction", task=message.task, text=message.text, sequence=message.sequence,
                   time=time.time())

    def tick(self):
        self.step += 1
        self.clock += 1
        self.state_pub.publish(self.state())
        index = self.clock - 1  # zero-based step of this observation
        if index % PERIOD_STEPS == 0:
            self.latent_sequence += 1
            latent = GoalLatent(latent=[0.0] * 8, instruction="stand-in", sequence=self.latent_sequence,
                                inference_time=0.3)
            latent.observation_stamp = stamp(self.clock)
            latent.header.stamp = stamp(self.clock)
            self.latent_pub.publish(latent)
        if self.trajectory_pub is None:
            return
        self.trajectory_sequence += 1
        # Asy(10): the latent of the previous period (the first period uses the first latent).
        used = max(1, index // PERIOD_STEPS)
        trajectory = EETrajectory(sequence=self.trajectory_sequence, latent_sequence=used, inference_time=0.02)
        trajectory.header.stamp = stamp(self.clock)
        self.trajectory_pub.publish(trajectory)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--success-steps", type=int, default=3)
    parser.add_argument("--never", nargs="*", default=["rotate", "push"])
    parser.add_argument("--refuse", nargs="*", default=[])
    parser.add_argument("--log")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--policy-when", help="ee_trajectory gets a publisher only once this file exists")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("calvin_bridge", namespace=args.namespace)
    StandInBridge(node, args)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
