"""The scripted expert without ROS: published scene states in, demonstration trajectories out.

``openhelix_ros.sim.ScriptedExpert`` plans from privileged state (robot_obs and scene_obs, which
SceneState carries) and reads one thing from the simulator object itself: its step counter, to notice
a reset. Here that counter comes from ``SceneState.step``, so the expert runs in its own process,
against any bridge, without the simulator.

When the expert acts (docs/ros_graph.md): on every new observation while it has a task, and on a new
instruction at once if the newest observation has not been acted on yet (in lockstep the bridge is
waiting for exactly that). A reset (the step counter going back) ends the task if the expert had
already acted on it: the task belonged to the previous episode, and acting on it in the new one would
record a demonstration of the wrong thing. An instruction that arrived before the reset and was never
acted on is kept, so either order of "reset, instruction" works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openhelix_ros.bridge.core import ROBOT_OBS_SIZE, SCENE_OBS_SIZE, check_obs_vector, euler_to_quaternion
from openhelix_ros.sim import ScriptedExpert
from openhelix_ros.sim.backends import scene_geometry
from openhelix_ros.sim.language import task_for_instruction
from openhelix_ros.sim.tasks import check_task_names


@dataclass
class ExpertPlan:
    """A demonstration trajectory for one observation: ``horizon`` waypoints (the expert's action,
    repeated), stamped with the observation it was computed from."""

    positions: np.ndarray  # (H, 3)
    quaternions: np.ndarray  # (H, 4) x, y, z, w
    gripper: np.ndarray  # (H,) +1 open, -1 close
    period: float
    stamp_ns: int
    step: int
    task: str


class _StepCounter:
    """Stands in for the simulator object: ScriptedExpert reads only ``steps`` from it."""

    def __init__(self) -> None:
        self.steps = 0


@dataclass
class _Observation:
    robot_obs: np.ndarray
    scene_obs: np.ndarray
    step: int
    stamp_ns: int

    def same_as(self, other: _Observation | None) -> bool:
        """One observation (e.g. re-sent by a waiting bridge), not merely one stamp: lockstep sim time
        starts again at 0 after every reset, so two episodes' observations can share a stamp."""
        return (other is not None and self.stamp_ns == other.stamp_ns
                and np.array_equal(self.robot_obs, other.robot_obs)
                and np.array_equal(self.scene_obs, other.scene_obs))


class ExpertCore:
    """Feeds published scene states and instructions to a ScriptedExpert and returns its plans."""

    def __init__(self, control_rate: float = 30.0, horizon: int = 1, backend: str = "embedded"):
        """``backend``: whose scene geometry the expert plans in (sim/backends.py); ValueError for an
        unknown one, RuntimeError when calvin is asked for and calvin_env is missing."""
        if not control_rate > 0:
            raise ValueError(f"control_rate must be > 0 Hz, got {control_rate}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 waypoint, got {horizon}")
        self.geometry = scene_geometry(backend)
        self.period = 1.0 / control_rate
        self.horizon = horizon
        self.task: str | None = None
        self.instruction_sequence: int | None = None
        self._counter = _StepCounter()
        self._expert: ScriptedExpert | None = None
        self._latest: _Observation | None = None
        self._acted: _Observation | None = None
        self._last_plan: ExpertPlan | None = None
        self._acted_on_task = False

    # ------------------------------------------------------------------------------ inputs
    def set_instruction(self, text: str, task: str = "", sequence: int = 0) -> str:
        """Start the subtask an instruction names (its ``task`` id, else the task its text was made
        from). Returns the task; raises ValueError naming an empty or unknown one."""
        task = task.strip()
        if not task:
            if not text.strip():
                raise ValueError("instruction has neither a task id nor text: nothing to demonstrate")
            try:
                task = task_for_instruction(text)
            except (KeyError, ValueError) as error:
                raise ValueError(f"instruction {text!r} names no task id and its text is not one the "
                                 f"expert knows ({error})") from None
        check_task_names([task])
        self.task = task
        self.instruction_sequence = int(sequence)
        # A fresh expert: a new instruction is a new plan even when the task is the same as before.
        self._expert = ScriptedExpert(self._counter, self.geometry)
        self._acted_on_task = False
        return task

    def observe(self, robot_obs, scene_obs, step: int, stamp_ns: int) -> bool:
        """Take a published observation. Returns True when it ended the task (a reset after acting)."""
        robot = check_obs_vector(robot_obs, ROBOT_OBS_SIZE, "robot_obs")
        scene = check_obs_vector(scene_obs, SCENE_OBS_SIZE, "scene_obs")
        if robot is None or scene is None:
            raise ValueError("scene state lacks robot_obs or scene_obs")
        observation = _Observation(robot, scene, int(step), int(stamp_ns))
        previous = self._latest
        reset = previous is not None and (step < previous.step or (
            step == previous.step and not observation.same_as(previous)))
        ended = False
        if reset and self._acted_on_task:
            self.task, self._expert, self._acted_on_task = None, None, False
            ended = True
        self._latest = observation
        return ended

    # ------------------------------------------------------------------------------ acting
    @property
    def pending(self) -> bool:
        """An observation not yet acted on, and a task to act for."""
        return self.task is not None and self._latest is not None and not self._latest.same_as(self._acted)

    def act(self) -> ExpertPlan | None:
        """The plan for the newest observation; the same plan again if asked twice for one observation
        (a bridge re-sending an observation must not advance the expert twice); None without a task."""
        if self.task is None or self._latest is None:
            return None
        latest = self._latest
        if latest.same_as(self._acted) and self._last_plan is not None and self._last_plan.task == self.task:
            return self._last_plan
        if self._expert is None:
            self._expert = ScriptedExpert(self._counter, self.geometry)
        self._counter.steps = latest.step
        position, euler, gripper = self._expert.act({"robot_obs": latest.robot_obs,
                                                     "scene_obs": latest.scene_obs}, self.task)
        quaternion = euler_to_quaternion(euler)
        plan = ExpertPlan(positions=np.tile(np.asarray(position, dtype=np.float64), (self.horizon, 1)),
                          quaternions=np.tile(quaternion, (self.horizon, 1)),
                          gripper=np.full(self.horizon, 1.0 if gripper > 0 else -1.0),
                          period=self.period, stamp_ns=latest.stamp_ns, step=latest.step, task=self.task)
        self._acted = latest
        self._last_plan = plan
        self._acted_on_task = True
        return plan
