"""The evaluation graph's nodes as their sans-IO cores in one process: lockstep, without DDS or threads.

For sweeps (ablations, comparisons) where the graph's processes and serialisation cost more than the
models: the same ``BridgeCore``, ``EvaluationRun``, ``System2Core`` with its ``LockstepImages``,
``System1Core`` with its ``PlanScheduler`` (or the ``ExpertCore``) that the nodes run, built from the
same resolved parameters (config/ + the graph's arguments, common/graphs.py), and fed in the order
the lockstep graph delivers (docs/ros_graph.md):

1. the bridge publishes a step's observation: System 2 queues its static image and encodes it at
   once when Asy(N) asks for it (with the instruction it has then), System 1 takes the pose, the
   finger opening and the cloud, the expert observes and answers;
2. the evaluator's ``check_tasks`` compares that state (the bridge's CheckGate holds the world until
   it has) and may publish the next instruction, or reset;
3. when the bridge needs a plan, System 1 plans (latent chosen by the exact Asy(N) rule) and the
   bridge executes its waypoints.

Messages pass through the very conversions the nodes use (PointCloud2, PoseStamped, GoalLatent,
EETrajectory built and read back), so inputs agree to the bit. What differs from the graph: no wall
clock (a plan that would wait for a late latent takes the fallback at once; a step without a plan
holds the pose at once instead of after ``step_timeout``), and no message is ever lost. Final figures
are taken through the graph; this is for choosing what to take there.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openhelix_ros.bridge.core import JOINT_NAMES, BridgeConfig, BridgeCore, StepObservation
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    goal_latent_from_msg,
    goal_latent_to_msg,
    make_header,
    pointcloud2_to_points,
    points_to_pointcloud2,
    pose_stamped_from_msg,
    pose_stamped_to_msg,
    trajectory_from_msg,
    trajectory_to_msg,
)
from openhelix_ros.common.graphs import EVAL, ResolvedNode, parameter_file_values
from openhelix_ros.evaluation.core import (
    ChainFinished,
    CheckTasks,
    EvaluationConfig,
    EvaluationRun,
    PublishInstruction,
    ResetScene,
    RunFinished,
)


def node_parameters(node: ResolvedNode, specs, config: Path) -> dict[str, Any]:
    """The parameter values a node of a resolved graph starts with: its specs' defaults, then its files
    under ``config`` in order, then the graph's overrides (what ``ros2 launch`` / ``openhelix up`` give it)."""
    values = {spec.name: spec.default for spec in specs}
    for name in node.parameter_files:
        path = Path(config) / name
        if path.exists():
            values.update({k: v for k, v in parameter_file_values(path).items() if k in values})
    values.update({k: v for k, v in node.overrides.items() if k in values})
    return values


# ---------------------------------------------------------------------------------------------------
# The policies, as the graph's nodes would answer


class ExpertPolicy:
    """The scripted_expert node: observes every published state and answers it (expert/node.py)."""

    def __init__(self, p: dict) -> None:
        from openhelix_ros.expert.core import ExpertCore

        self.core = ExpertCore(control_rate=p["control_rate"], horizon=p["horizon"], backend=p["backend"])
        self._plan = None

    def instruct(self, text: str, task: str, sequence: int, observation: StepObservation) -> None:
        try:
            self.core.set_instruction(text, task, sequence)
        except ValueError:
            return  # the node logs and ignores it
        if self.core.pending:
            self._plan = self._act()

    def observe(self, observation: StepObservation, with_points: bool) -> None:
        self.core.observe(observation.robot_obs.tolist(), observation.scene_obs.tolist(), observation.step,
                          observation.stamp_ns)
        self._plan = self._act()

    def _act(self):
        plan = self.core.act()
        if plan is None:
            return None
        message = trajectory_to_msg(plan.positions, plan.quaternions, plan.gripper, plan.period,
                                    frame_id=graph.WORLD_FRAME, stamp=plan.stamp_ns, sequence=1,
                                    latent_sequence=0, latent_stamp=0, inference_time=0.0)
        return trajectory_from_msg(message)

    def plan(self, observation: StepObservation):
        plan = self._plan
        return plan if plan is not None and plan.stamp_ns == observation.stamp_ns else None


class DualPolicy:
    """The system2 and system1 nodes in lockstep (system2/node.py, system1/node.py) over their cores."""

    def __init__(self, system2: dict, system1: dict) -> None:
        from openhelix_ros.system1.core import (
            CameraFrameAssembler,
            plan_scheduler_from_parameters,
            system1_core_from_parameters,
        )
        from openhelix_ros.system2.core import LOCKSTEP_QUEUE, LockstepImages, System2Core

        for name, p in (("system2", system2), ("system1", system1)):
            if p["clock_mode"] != "lockstep":
                raise ValueError(f"the in-process graph runs in lockstep; {name} has clock_mode {p['clock_mode']!r}")
        self.system2 = System2Core.load(system2["model"], system2["checkpoint"], system2["model_path"],
                                        system2["seed"], system2["device"])
        self.system1 = system1_core_from_parameters(system1)
        # A camera policy (3D Diffuser Actor, a 2D image policy) reads each camera's organised cloud,
        # paired by stamp as the node pairs them; any other the fused cloud.
        self.frames = CameraFrameAssembler(self.system1.camera_names) if self.system1.reads_cameras else None
        self.scheduler = plan_scheduler_from_parameters(system1)
        self.images = LockstepImages(int(system2["latent_period_steps"]), LOCKSTEP_QUEUE)
        self.finger_joints = list(system1["finger_joints"])
        self.open_width = float(system1["gripper_open_width"])
        self.wait_timeout = float(system1["latent_wait_timeout"])
        self.instruction: tuple[str, int] | None = None
        self.instruction_stale = False  # the last episode's, after a reset (system2/node.py waits for the next)
        self._episode = 0
        self.latents = 0
        self._clock = 0.0  # stands in for the nodes' monotonic clocks

    def _now(self) -> float:
        self._clock += 1e-3
        return self._clock

    def instruct(self, text: str, task: str, sequence: int, observation: StepObservation) -> None:
        try:
            text = self.system2.check_instruction(text)
        except ValueError:
            return
        self.instruction = (text, int(sequence))
        self.instruction_stale = False
        self._encode(observation.stamp_ns)

    def observe(self, observation: StepObservation, with_points: bool) -> None:
        """One published observation, in the order the bridge publishes it (bridge/messages.py): the
        images (System 2), the cloud when one goes out, joint states, the pose (System 1)."""
        from openhelix_ros.common.conversions import image_to_array, rgb_to_image
        from openhelix_ros.common.timing import stamp_to_step
        from openhelix_ros.system1.core import finger_width, gripper_openness_from_width

        stamp = observation.stamp_ns
        header_stamp = make_header(stamp=stamp).stamp
        # System 2: the static image, as the bridge publishes it and the node reads it.
        image = image_to_array(rgb_to_image(observation.rgb["static"], "static_camera_optical_frame", header_stamp))
        self.images.offer(stamp, stamp_to_step(stamp, self.scheduler.selector.control_rate), image[..., :3],
                          self._now())
        if self.images.episode != self._episode:
            self._episode = self.images.episode
            self.instruction_stale = self.instruction is not None
        self._encode(stamp)
        if with_points and self.frames is not None:
            self._camera_points(observation, header_stamp)
        elif with_points:
            xyz, rgb = observation.points()
            cloud = pointcloud2_to_points(points_to_pointcloud2(xyz, rgb, graph.WORLD_FRAME, header_stamp))
            if len(cloud.xyz):  # the node drops an empty cloud
                self.scheduler.on_points(cloud.stamp_ns, cloud.xyz, cloud.rgb, self._now())
        width = finger_width(list(JOINT_NAMES), observation.joint_positions.tolist(), self.finger_joints)
        if width is not None:
            self.scheduler.on_gripper(gripper_openness_from_width(width, self.open_width))
        position, quaternion, _, pose_stamp = pose_stamped_from_msg(pose_stamped_to_msg(
            observation.tcp_position, observation.tcp_quaternion, graph.WORLD_FRAME, header_stamp))
        self.scheduler.on_pose(pose_stamp, position, quaternion)

    def _camera_points(self, observation: StepObservation, header_stamp) -> None:
        """Each camera's organised cloud as the bridge publishes it and the system1 node reads it
        (system1/node.py ``_on_camera_points``), in the bridge's camera order."""
        from openhelix_ros.common.conversions import (
            organized_points_to_pointcloud2,
            pointcloud2_to_organized,
            stamp_to_ns,
        )

        for name in observation.cameras:
            if name not in self.frames.cameras:
                continue
            message = organized_points_to_pointcloud2(*observation.camera_points(name), graph.WORLD_FRAME,
                                                      header_stamp)
            xyz, rgb, missing = pointcloud2_to_organized(message)
            if missing == xyz.shape[0] * xyz.shape[1]:
                continue  # the node drops a cloud without a finite point
            stamp = stamp_to_ns(message.header.stamp)
            frame, reset = self.frames.add(name, stamp, xyz, rgb)
            if reset:
                self.system1.reset_history()
            if frame is not None:
                self.scheduler.on_points(stamp, frame[0], frame[1], self._now())

    def _encode(self, clock_ns: int) -> None:
        from openhelix_ros.system1.core import LatentRecord

        if self.instruction is None or self.instruction_stale:
            return
        while (image := self.images.pop(self.instruction[1])) is not None:
            try:
                result = self.system2.encode(image.rgb, self.instruction[0])
            except ValueError:
                continue
            self.latents += 1
            # through the message and back, as published and received: float32 on the wire
            message = goal_latent_to_msg(result.goal, instruction=result.instruction, sequence=self.latents)
            self.scheduler.on_latent(LatentRecord(
                latent=self.system1.check_latent(goal_latent_from_msg(message).goal),
                sequence=self.latents, stamp_ns=int(clock_ns), observation_stamp_ns=image.stamp_ns,
                instruction=result.instruction, received=self._now()))

    def plan(self, observation: StepObservation):
        """System 1's answer to the observation the bridge waits on (None: it publishes nothing)."""
        for _ in range(3):  # no wall clock: what would wait for an input that cannot come goes on at once
            decision = self.scheduler.step(self._now(), observation.stamp_ns)
            if decision.plan is not None:
                break
            self._clock += self.wait_timeout + 1.0
        else:
            return None
        request = decision.plan
        try:
            result = self.system1.plan(request.xyz, request.rgb, request.position, request.quaternion,
                                       request.gripper_open, request.latent.latent, request.stamp_ns)
            message = trajectory_to_msg(result.positions, result.quaternions, result.gripper, result.period,
                                        frame_id=graph.WORLD_FRAME, stamp=request.stamp_ns, sequence=1,
                                        latent_sequence=request.latent.sequence,
                                        latent_stamp=request.latent.stamp_ns, inference_time=result.inference_time)
        except ValueError:
            self.scheduler.planned(request.stamp_ns, False)
            return None
        self.scheduler.planned(request.stamp_ns, True)
        return trajectory_from_msg(message)


# ---------------------------------------------------------------------------------------------------
# The loop


@dataclass
class InProcessStats:
    steps: int = 0
    plans: int = 0
    holds: int = 0  # steps without a plan (the graph's bridge would hold after step_timeout)
    seconds: float = 0.0

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


class InProcessGraph:
    """A bridge and a policy in one process, run through ``EvaluationRun`` goals."""

    def __init__(self, bridge: BridgeCore, policy) -> None:
        if bridge.config.clock_mode != "lockstep":
            raise ValueError("the in-process graph runs in lockstep only")
        self.bridge = bridge
        self.policy = policy
        self.stats = InProcessStats()
        self._instructions = itertools.count(1)  # Instruction.sequence, as the evaluator numbers them

    @classmethod
    def from_graph(cls, arguments: dict[str, str] | None = None, extra: dict | None = None,
                   config: Path | None = None) -> tuple[InProcessGraph, dict]:
        """The eval graph (common/graphs.py) for these launch arguments, as cores; also returns the
        evaluator's parameters. ``config``: the directory of parameter files (default: the project's)."""
        from openhelix_ros.bridge.parameters import PARAMETERS as BRIDGE
        from openhelix_ros.common.environment import config_dir, project_root
        from openhelix_ros.evaluation.parameters import PARAMETERS as EVALUATOR
        from openhelix_ros.expert.parameters import PARAMETERS as EXPERT
        from openhelix_ros.system1.parameters import PARAMETERS as SYSTEM1
        from openhelix_ros.system2.parameters import PARAMETERS as SYSTEM2

        config = Path(config) if config is not None else config_dir(project_root())
        nodes = {node.name: node for node in EVAL.resolve(arguments or {}, extra or {})}
        specs = {"calvin_bridge": BRIDGE, "evaluator": EVALUATOR, "scripted_expert": EXPERT,
                 "system1": SYSTEM1, "system2": SYSTEM2}
        p = {name: node_parameters(node, specs[name], config) for name, node in nodes.items() if name in specs}
        bridge = BridgeCore(BridgeConfig.from_parameters(p["calvin_bridge"]))
        if "scripted_expert" in p:
            policy = ExpertPolicy(p["scripted_expert"])
        else:
            policy = DualPolicy(p["system2"], p["system1"])
        return cls(bridge, policy), p["evaluator"]

    def evaluate(self, config: EvaluationConfig, on_chain: Callable | None = None) -> EvaluationRun:
        """Run one goal to its end; ``on_chain(record)`` after every chain. Returns the finished run."""
        run = EvaluationRun(config)
        self.bridge.set_protocol(run.config.protocol)
        started = time.perf_counter()
        clock = 0.0
        pending = list(run.start(clock))
        try:
            while True:
                while pending:
                    pending.extend(self._carry_out(pending.pop(0), run, clock, on_chain))
                if run.finished:
                    return run
                clock += 1.0 / self.bridge.config.control_rate
                observation = self._step()
                self.policy.observe(observation, self.bridge.follower.needs_plan())
                pending.extend(run.on_scene_state(clock, observation.step))
        finally:
            self.bridge.set_protocol("")
            self.stats.seconds += time.perf_counter() - started

    def _step(self) -> StepObservation:
        """One env step: the plan's next waypoint, a new plan's first, or (no plan) a hold."""
        follower = self.bridge.follower
        if follower.needs_plan():
            trajectory = self.policy.plan(self.bridge.current)
            if trajectory is not None and follower.accept_plan(trajectory, self.bridge.current.stamp_ns):
                self.stats.plans += 1
        self.stats.steps += 1
        observation = self.bridge.lockstep_step()
        if observation is None:
            self.stats.holds += 1
            observation = self.bridge.step_env(None)
        return observation

    def _carry_out(self, command, run: EvaluationRun, clock: float, on_chain) -> list:
        bridge = self.bridge
        if isinstance(command, ResetScene):
            try:
                observation = bridge.reset(command.robot_obs, command.scene_obs, seed=command.seed)
            except ValueError as error:
                return run.on_reset_done(clock, False, message=str(error))
            self.policy.observe(observation, True)
            return run.on_reset_done(clock, True, observation, step=observation.step, plans=observation.plans)
        if isinstance(command, PublishInstruction):
            bridge.begin_subtask(command.task)
            self.policy.instruct(command.text, command.task, next(self._instructions), bridge.current)
            return []
        if isinstance(command, CheckTasks):
            start = command.start_state
            try:
                completed = bridge.check_tasks(command.tasks, start.stamp_ns, start.robot_obs, start.scene_obs)
            except ValueError as error:
                return run.on_check_result(clock, False, message=str(error))
            current = bridge.current
            if len(completed) == len(command.tasks) and bridge.subtask_done():
                # As the bridge node: the state goes out again with its cloud, before the evaluator's next
                # instruction, as in the graph.
                self.policy.observe(current, True)
            return run.on_check_result(clock, True, completed, current, current.step, current_plans=current.plans)
        if isinstance(command, ChainFinished):
            if on_chain is not None:
                on_chain(command.record)
            return []
        if isinstance(command, RunFinished):
            return []
        raise TypeError(f"unknown command {command!r}")
