"""``PlayTableEnv``: the embedded CALVIN-style play table with calvin_env's interface.

Observation (as CALVIN's ``PlayTableSimEnv.get_obs``):
  rgb_obs   {"rgb_static": (200, 200, 3) uint8, "rgb_gripper": (84, 84, 3) uint8}
  depth_obs {"depth_static": (200, 200) float32 m, "depth_gripper": (84, 84) float32 m}
  robot_obs (15,) float64: tcp xyz, tcp euler xyz, gripper opening width, 7 arm joints, gripper action
  scene_obs (24,) float64: sliding door, drawer, button, switch, lightbulb, green LED, then the red,
            blue and pink blocks as xyz + euler xyz each.
Actions: a 3-tuple ``(position(3), euler(3), gripper)`` is absolute; a 7-vector is relative (scaled
by 0.02 m / 0.05 rad, clipped to [-1, 1]) unless ``config.action_mode == "absolute"``. Gripper > 0
opens, <= 0 closes (CALVIN's +-1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet as pb

from openhelix_ros.sim import scene as sc
from openhelix_ros.sim.cameras import (
    GRIPPER_CAMERA,
    STATIC_CAMERA,
    gripper_camera_pose,
    render,
    static_camera_pose,
)
from openhelix_ros.sim.config import PlayTableConfig
from openhelix_ros.sim.dynamic import DYNAMIC_TASKS, BlockMotion
from openhelix_ros.sim.tasks import TaskOracle, check_task_names

ROBOT_OBS_SIZE = 15
SCENE_OBS_SIZE = 24
# scene_obs layout
DOOR, DRAWER, BUTTON, SWITCH, LIGHTBULB, LED = range(6)
BLOCK_SLICES = {name: slice(6 + 6 * i, 12 + 6 * i) for i, name in enumerate(sc.BLOCK_NAMES)}
# The lowest a block may legitimately be: on the drawer's floor.
DRAWER_FLOOR_LIMIT = sc.DRAWER_BOTTOM - 0.01

_ARM_FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
_FINGER_FORCE = 40.0
_JOINT_FRICTION = {sc.DOOR_JOINT: 4.0, sc.DRAWER_JOINT: 4.0, sc.SWITCH_JOINT: 2.0}


def _as_finite_vector(value: Any, size: int, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be numeric, got {type(value).__name__}: {error}") from None
    if array.shape != (size,):
        raise ValueError(f"{what} must have shape ({size},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or inf at index {np.flatnonzero(~np.isfinite(array)).tolist()}")
    return array


class PlayTableEnv:
    """The embedded simulator. Create with ``make_env`` or directly with a ``PlayTableConfig``."""

    backend = "embedded"

    def __init__(self, config: PlayTableConfig | None = None):
        self.config = config or PlayTableConfig()
        self.config.validate()
        self.client = pb.connect(pb.DIRECT)
        pb.setTimeStep(1.0 / (self.config.control_hz * self.config.physics_substeps), physicsClientId=self.client)
        pb.setGravity(0, 0, -9.81, physicsClientId=self.client)
        pb.setPhysicsEngineParameter(deterministicOverlappingPairs=1, numSolverIterations=60,
                                     physicsClientId=self.client)
        self.handles = sc.load_play_table(self.client, light_robot_visuals=self.config.light_robot_visuals)
        self.renderer_name, self._renderer = self._choose_renderer(self.config.renderer)
        self.tasks = TaskOracle()
        self.motion = BlockMotion(self.config)
        self.np_random = np.random.default_rng(self.config.seed)
        self._arm_lower = np.array([pb.getJointInfo(self.robot, j, physicsClientId=self.client)[8]
                                    for j in sc.PANDA_ARM_JOINTS])
        self._arm_upper = np.array([pb.getJointInfo(self.robot, j, physicsClientId=self.client)[9]
                                    for j in sc.PANDA_ARM_JOINTS])
        self.lightbulb_on = False
        self.led_on = False
        self._button_was_pressed = False
        self.gripper_action = 1.0
        self.target_position = np.zeros(3)
        self.target_euler = np.zeros(3)
        self.steps = 0
        self.reset(seed=self.config.seed)

    # ---------------------------------------------------------------------------------------- setup
    @property
    def robot(self) -> int:
        return self.handles.robot

    @property
    def table(self) -> int:
        return self.handles.table

    def _choose_renderer(self, wanted: str) -> tuple[str, int]:
        """PyBullet's TinyRenderer, or the EGL plugin when asked for. "auto" means TinyRenderer: on
        this project's CPU machines (Mesa llvmpipe) EGL measured slower, see the simulator bench."""
        if wanted == "egl" and self.config.render:
            import importlib.util

            spec = importlib.util.find_spec("eglRenderer")  # ships with the pybullet wheel
            if spec is not None and spec.origin:
                plugin = pb.loadPlugin(spec.origin, "_eglRendererPlugin", physicsClientId=self.client)
                if plugin >= 0:
                    return "egl", pb.ER_BULLET_HARDWARE_OPENGL
            raise RuntimeError("renderer='egl' was asked for but PyBullet's EGL plugin did not load")
        return "tiny", pb.ER_TINY_RENDERER

    def close(self) -> None:
        if self.client is not None and pb.isConnected(self.client):
            pb.disconnect(self.client)
        self.client = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter shutdown pybullet may already be gone; nothing to release
            pass

    # ---------------------------------------------------------------------------------------- state
    def _joint_state(self, body: int, joint: int) -> float:
        return pb.getJointState(body, joint, physicsClientId=self.client)[0]

    def _table_joint(self, name: str) -> float:
        return self._joint_state(self.table, self.handles.table_joints[name])

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """TCP (between the fingertips) position and euler xyz (PyBullet's roll-pitch-yaw)."""
        state = pb.getLinkState(self.robot, sc.PANDA_TCP_LINK, computeForwardKinematics=True,
                                physicsClientId=self.client)
        return np.array(state[4]), np.array(pb.getEulerFromQuaternion(state[5]))

    def get_robot_obs(self) -> np.ndarray:
        position, euler = self.tcp_pose()
        width = sum(self._joint_state(self.robot, j) for j in sc.PANDA_FINGER_JOINTS)
        joints = [self._joint_state(self.robot, j) for j in sc.PANDA_ARM_JOINTS]
        return np.concatenate([position, euler, [width], joints, [self.gripper_action]])

    def get_scene_obs(self) -> np.ndarray:
        values = [self._table_joint(sc.DOOR_JOINT), self._table_joint(sc.DRAWER_JOINT),
                  self._table_joint(sc.BUTTON_JOINT), self._table_joint(sc.SWITCH_JOINT),
                  float(self.lightbulb_on), float(self.led_on)]
        for name in sc.BLOCK_NAMES:
            position, orientation = pb.getBasePositionAndOrientation(self.handles.blocks[name],
                                                                     physicsClientId=self.client)
            values += list(position) + list(pb.getEulerFromQuaternion(orientation))
        return np.array(values, dtype=np.float64)

    def get_state_obs(self) -> dict:
        return {"robot_obs": self.get_robot_obs(), "scene_obs": self.get_scene_obs()}

    def camera_info(self) -> dict:
        """Intrinsics (3x3) and extrinsics (4x4 camera-to-world, OpenCV frame) of both cameras, now."""
        hand = pb.getLinkState(self.robot, sc.PANDA_HAND_LINK, computeForwardKinematics=True,
                               physicsClientId=self.client)
        return {
            "static": {"intrinsics": STATIC_CAMERA.intrinsics(), "extrinsics": static_camera_pose(),
                       "width": STATIC_CAMERA.width, "height": STATIC_CAMERA.height},
            "gripper": {"intrinsics": GRIPPER_CAMERA.intrinsics(),
                        "extrinsics": gripper_camera_pose(hand[4], hand[5]),
                        "width": GRIPPER_CAMERA.width, "height": GRIPPER_CAMERA.height},
        }

    def render_cameras(self) -> tuple[dict, dict]:
        cameras = self.camera_info()
        rgb_static, depth_static = render(self.client, STATIC_CAMERA, cameras["static"]["extrinsics"],
                                          self._renderer)
        rgb_gripper, depth_gripper = render(self.client, GRIPPER_CAMERA, cameras["gripper"]["extrinsics"],
                                            self._renderer)
        return ({"rgb_static": rgb_static, "rgb_gripper": rgb_gripper},
                {"depth_static": depth_static, "depth_gripper": depth_gripper})

    def get_obs(self) -> dict:
        if self.config.render:
            rgb_obs, depth_obs = self.render_cameras()
        else:
            rgb_obs, depth_obs = {}, {}
        return {"rgb_obs": rgb_obs, "depth_obs": depth_obs, **self.get_state_obs()}

    def _contacts_of(self, body: int) -> list[tuple]:
        """PyBullet contact-point tuples (index 2: other body, 4: its link, 8: distance) of ``body``.

        Computed from closest points within ``config.contact_distance`` rather than from the solver's
        contact manifold, so that they are right straight after a reset (no step needed) and do not
        depend on points the solver keeps cached up to 2 cm apart. The robot's fixed base standing on
        its pedestal is not a contact.
        """
        limit = self.config.contact_distance
        bodies = [self.table, self.robot, *self.handles.blocks.values()]
        contacts = []
        for other in bodies:
            if other == body:
                continue
            for point in pb.getClosestPoints(body, other, limit, physicsClientId=self.client):
                if (body == self.robot and point[3] == -1) or (other == self.robot and point[4] == -1):
                    continue
                contacts.append(tuple(point[:9]))
        return contacts

    def get_info(self) -> dict:
        """Robot and scene state in the layout CALVIN's oracle reads (uids, links, contacts, poses)."""
        robot_obs = self.get_robot_obs()
        movable = {}
        for name, uid in self.handles.blocks.items():
            position, orientation = pb.getBasePositionAndOrientation(uid, physicsClientId=self.client)
            linear, angular = pb.getBaseVelocity(uid, physicsClientId=self.client)
            movable[name] = {"uid": uid, "current_pos": np.array(position), "current_orn": np.array(orientation),
                             "current_lin_vel": np.array(linear), "current_ang_vel": np.array(angular),
                             "contacts": self._contacts_of(uid)}
        return {
            "robot_info": {"uid": self.robot, "contacts": self._contacts_of(self.robot),
                           "tcp_pos": robot_obs[:3], "tcp_orn": robot_obs[3:6],
                           "gripper_opening_width": robot_obs[6], "arm_joint_states": robot_obs[7:14],
                           "gripper_action": robot_obs[14]},
            "scene_info": {
                "fixed_objects": {"table": {"uid": self.table, "links": dict(self.handles.table_links)}},
                "movable_objects": movable,
                "doors": {sc.DOOR_JOINT: {"current_state": self._table_joint(sc.DOOR_JOINT)},
                          sc.DRAWER_JOINT: {"current_state": self._table_joint(sc.DRAWER_JOINT)}},
                "buttons": {sc.BUTTON_JOINT: {"joint_state": self._table_joint(sc.BUTTON_JOINT)}},
                "switches": {sc.SWITCH_JOINT: {"joint_state": self._table_joint(sc.SWITCH_JOINT)}},
                "lights": {"lightbulb": {"logical_state": int(self.lightbulb_on)},
                           "led": {"logical_state": int(self.led_on)}},
            },
            "steps": self.steps,
        }

    # ---------------------------------------------------------------------------------------- reset
    def _validate_reset(self, robot_obs: np.ndarray, scene_obs: np.ndarray) -> None:
        joints = robot_obs[7:14]
        outside = np.flatnonzero((joints < self._arm_lower - 1e-6) | (joints > self._arm_upper + 1e-6))
        if outside.size:
            raise ValueError(f"robot_obs arm joint(s) {outside.tolist()} outside the Panda's limits "
                             f"(got {joints[outside].round(3).tolist()})")
        if not 0.0 <= robot_obs[6] <= 2 * sc.PANDA_FINGER_MAX + 1e-6:
            raise ValueError(f"robot_obs gripper width {robot_obs[6]:.4f} outside [0, 0.08] m")
        ranges = {DOOR: ("sliding door", sc.DOOR_RANGE), DRAWER: ("drawer", sc.DRAWER_RANGE),
                  BUTTON: ("button", sc.BUTTON_RANGE), SWITCH: ("switch", sc.SWITCH_RANGE)}
        for index, (what, (low, high)) in ranges.items():
            if not low - 1e-6 <= scene_obs[index] <= high + 1e-6:
                raise ValueError(f"scene_obs[{index}] ({what}) = {scene_obs[index]:.4f} outside [{low}, {high}]")
        for index, what in ((LIGHTBULB, "lightbulb"), (LED, "led")):
            if scene_obs[index] not in (0.0, 1.0):
                raise ValueError(f"scene_obs[{index}] ({what}) must be 0 or 1, got {scene_obs[index]}")
        if scene_obs[LIGHTBULB] == 1.0 and scene_obs[SWITCH] < sc.SWITCH_OFF_BELOW:
            raise ValueError("impossible scene: lightbulb on while the switch is in its off position")
        if scene_obs[LIGHTBULB] == 0.0 and scene_obs[SWITCH] > sc.SWITCH_ON_ABOVE:
            raise ValueError("impossible scene: lightbulb off while the switch is in its on position")
        if scene_obs[BUTTON] < sc.BUTTON_PRESSED_BELOW:
            raise ValueError("impossible scene: the button cannot start pressed down")
        low = np.array([sc.DESK_X[0] - 0.2, sc.DESK_Y[0] - 0.35, DRAWER_FLOOR_LIMIT])
        high = np.array([sc.DESK_X[1], sc.DESK_Y[1], 0.6])
        for name, part in BLOCK_SLICES.items():
            position = scene_obs[part][:3]
            if np.any(position < low) or np.any(position > high):
                raise ValueError(f"impossible scene: {name} at {position.round(3).tolist()} is outside the "
                                 f"reachable box {low.tolist()}..{high.tolist()}")

    def _write_state(self, robot_obs: np.ndarray, scene_obs: np.ndarray) -> None:
        c = self.client
        for joint, value in zip(sc.PANDA_ARM_JOINTS, robot_obs[7:14], strict=True):
            pb.resetJointState(self.robot, joint, value, 0.0, physicsClientId=c)
        for joint in sc.PANDA_FINGER_JOINTS:
            pb.resetJointState(self.robot, joint, robot_obs[6] / 2, 0.0, physicsClientId=c)
        self.gripper_action = 1.0 if robot_obs[14] > 0 else -1.0
        joints = self.handles.table_joints
        for name, index in ((sc.DOOR_JOINT, DOOR), (sc.DRAWER_JOINT, DRAWER), (sc.BUTTON_JOINT, BUTTON),
                            (sc.SWITCH_JOINT, SWITCH)):
            pb.resetJointState(self.table, joints[name], scene_obs[index], 0.0, physicsClientId=c)
        for name, part in BLOCK_SLICES.items():
            values = scene_obs[part]
            pb.resetBasePositionAndOrientation(self.handles.blocks[name], values[:3].tolist(),
                                               pb.getQuaternionFromEuler(values[3:].tolist()), physicsClientId=c)
            pb.resetBaseVelocity(self.handles.blocks[name], [0, 0, 0], [0, 0, 0], physicsClientId=c)
        self.lightbulb_on = bool(scene_obs[LIGHTBULB])
        self.led_on = bool(scene_obs[LED])
        self._button_was_pressed = False
        self._hold_robot_here()
        self._apply_passive_joint_motors()
        self._update_light_visuals()

    def _overlaps(self) -> list[str]:
        """Names of pairs that interpenetrate by more than 5 mm (an impossible start state)."""
        pb.performCollisionDetection(physicsClientId=self.client)
        problems = []
        bodies = dict(self.handles.blocks)
        names = list(bodies)
        others = {"robot": self.robot, "table": self.table}
        for i, name in enumerate(names):
            for other_name, other in [(n, bodies[n]) for n in names[i + 1:]] + list(others.items()):
                points = pb.getClosestPoints(bodies[name], other, 0.0, physicsClientId=self.client)
                if points and min(p[8] for p in points) < -0.005:
                    problems.append(f"{name}/{other_name}")
        return problems

    def _snapshot(self) -> tuple:
        return (pb.saveState(physicsClientId=self.client), self.lightbulb_on, self.led_on,
                self._button_was_pressed, self.gripper_action, self.target_position.copy(),
                self.target_euler.copy(), self.steps, self.motion.snapshot())

    def _restore(self, snapshot: tuple) -> None:
        (state_id, self.lightbulb_on, self.led_on, self._button_was_pressed, self.gripper_action,
         self.target_position, self.target_euler, self.steps, motion) = snapshot
        pb.restoreState(stateId=state_id, physicsClientId=self.client)
        self.motion.restore(motion)
        self._hold_robot_here()
        self._apply_passive_joint_motors()
        self._update_light_visuals()

    def _drop_snapshot(self, snapshot: tuple) -> None:
        pb.removeState(snapshot[0], physicsClientId=self.client)

    def reset(self, robot_obs=None, scene_obs=None, seed: int | None = None) -> dict:
        """Put the world into a state and return the observation.

        ``robot_obs`` / ``scene_obs`` (CALVIN layouts) set that state; either left out is sampled
        (with ``seed`` if given): the robot goes to its neutral pose, the scene to a random valid
        CALVIN start condition. Impossible states raise ValueError and change nothing.
        """
        from openhelix_ros.sim.protocol import sample_initial_condition, state_for_condition

        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        if robot_obs is not None:
            robot_obs = _as_finite_vector(robot_obs, ROBOT_OBS_SIZE, "robot_obs")
        if scene_obs is not None:
            scene_obs = _as_finite_vector(scene_obs, SCENE_OBS_SIZE, "scene_obs")
        if robot_obs is None or scene_obs is None:
            rng = self.np_random if seed is None else np.random.default_rng(seed)
            sampled_robot, sampled_scene = state_for_condition(sample_initial_condition(rng), rng)
            robot_obs = sampled_robot if robot_obs is None else robot_obs
            scene_obs = sampled_scene if scene_obs is None else scene_obs
        self._validate_reset(robot_obs, scene_obs)
        snapshot = self._snapshot()
        try:
            self._write_state(robot_obs, scene_obs)
            problems = self._overlaps()
            if problems:
                raise ValueError(f"impossible reset state: bodies interpenetrate ({', '.join(problems)})")
        except Exception:
            self._restore(snapshot)
            self._drop_snapshot(snapshot)
            raise
        self._drop_snapshot(snapshot)
        self.steps = 0
        self.motion.stop()
        # One collision pass so that contacts (and hence the oracle) are right before the first step.
        pb.performCollisionDetection(physicsClientId=self.client)
        return self.get_obs()

    def reset_to_condition(self, condition: dict, seed: int | None = None) -> dict:
        """Reset to a concrete state for a symbolic CALVIN start condition (see ``sample_chains``)."""
        from openhelix_ros.sim.protocol import state_for_condition

        rng = np.random.default_rng(seed) if seed is not None else self.np_random
        robot_obs, scene_obs = state_for_condition(condition, rng)
        return self.reset(robot_obs=robot_obs, scene_obs=scene_obs)

    def robot_obs_for_tcp(self, position, yaw: float = math.pi / 2, gripper_width: float = 0.08,
                          gripper_action: float = 1.0, iterations: int = 20) -> np.ndarray:
        """A ``robot_obs`` (for ``reset``) with the gripper pointing down at ``position`` and ``yaw``.

        Solved by IK on the current model; the simulator state is left as it was. Useful to start an
        episode in a chosen pose (tests, demonstrations that begin mid-task)."""
        position = _as_finite_vector(position, 3, "position")
        snapshot = self._snapshot()
        try:
            target_euler = np.array([math.pi, 0.0, yaw])
            for joint, value in zip(sc.PANDA_ARM_JOINTS, sc.ROBOT_NEUTRAL_JOINTS, strict=True):
                pb.resetJointState(self.robot, joint, value, physicsClientId=self.client)
            for _ in range(iterations):  # re-seeding IK from its own answer converges to the exact pose
                for joint, value in zip(sc.PANDA_ARM_JOINTS, self._arm_targets(position, target_euler), strict=True):
                    pb.resetJointState(self.robot, joint, value, physicsClientId=self.client)
            for joint in sc.PANDA_FINGER_JOINTS:
                pb.resetJointState(self.robot, joint, gripper_width / 2, physicsClientId=self.client)
            robot_obs = self.get_robot_obs()
            robot_obs[14] = 1.0 if gripper_action > 0 else -1.0
        finally:
            self._restore(snapshot)
            self._drop_snapshot(snapshot)
        return robot_obs

    # ---------------------------------------------------------------------------------------- control
    def _hold_robot_here(self) -> None:
        """Make the motors hold the current joint positions and the TCP target equal the TCP."""
        joints = [self._joint_state(self.robot, j) for j in sc.PANDA_ARM_JOINTS]
        pb.setJointMotorControlArray(self.robot, list(sc.PANDA_ARM_JOINTS), pb.POSITION_CONTROL,
                                     targetPositions=joints, forces=_ARM_FORCES, physicsClientId=self.client)
        self._command_gripper(self.gripper_action)
        self.target_position, self.target_euler = self.tcp_pose()

    def _apply_passive_joint_motors(self) -> None:
        """Friction on the door, drawer and switch (a zero-velocity motor with a small force) and a
        spring that returns the button."""
        joints = self.handles.table_joints
        for name, force in _JOINT_FRICTION.items():
            pb.setJointMotorControl2(self.table, joints[name], pb.VELOCITY_CONTROL, targetVelocity=0.0,
                                     force=force, physicsClientId=self.client)
        pb.setJointMotorControl2(self.table, joints[sc.BUTTON_JOINT], pb.POSITION_CONTROL, targetPosition=0.0,
                                 force=6.0, positionGain=0.05, physicsClientId=self.client)

    def _command_gripper(self, action: float) -> None:
        target = sc.PANDA_FINGER_MAX if action > 0 else 0.0
        pb.setJointMotorControlArray(self.robot, list(sc.PANDA_FINGER_JOINTS), pb.POSITION_CONTROL,
                                     targetPositions=[target, target], forces=[_FINGER_FORCE] * 2,
                                     physicsClientId=self.client)

    def parse_action(self, action) -> tuple[np.ndarray, np.ndarray, float]:
        """Validate an action and turn it into an absolute (position, euler, gripper) target.

        Raises ValueError (and changes nothing) for NaN/inf or a wrong shape."""
        if isinstance(action, tuple) and len(action) == 3:
            position = _as_finite_vector(action[0], 3, "absolute action position")
            euler = _as_finite_vector(action[1], 3, "absolute action euler")
            gripper = _as_finite_vector(np.ravel(np.asarray(action[2], dtype=np.float64))
                                        if np.ndim(action[2]) else [action[2]], 1, "gripper action")[0]
            return position, euler, gripper
        vector = _as_finite_vector(np.ravel(action) if np.ndim(action) > 1 and np.size(action) == 7 else action,
                                   7, "action")
        if self.config.action_mode == "absolute":
            return vector[:3], vector[3:6], vector[6]
        vector = np.clip(vector, -1.0, 1.0)
        position = self.target_position + vector[:3] * self.config.relative_position_scale
        euler = self.target_euler + vector[3:6] * self.config.relative_rotation_scale
        return position, euler, vector[6]

    def _arm_targets(self, position: np.ndarray, euler: np.ndarray) -> list[float]:
        quaternion = pb.getQuaternionFromEuler(euler.tolist())
        lower, upper = self._arm_lower.tolist() + [0.0, 0.0], self._arm_upper.tolist() + [0.04, 0.04]
        ranges = [u - lo for lo, u in zip(lower, upper, strict=True)]
        rest = list(sc.ROBOT_NEUTRAL_JOINTS) + [0.02, 0.02]
        solution = pb.calculateInverseKinematics(
            self.robot, sc.PANDA_TCP_LINK, position.tolist(), quaternion, lowerLimits=lower,
            upperLimits=upper, jointRanges=ranges, restPoses=rest, maxNumIterations=60,
            residualThreshold=1e-5, physicsClientId=self.client)
        return list(np.clip(solution[:7], self._arm_lower, self._arm_upper))

    def step(self, action) -> tuple[dict, float, bool, dict]:
        """Advance 1/30 s (8 physics substeps); returns (obs, reward 0, done False, info) like calvin_env."""
        position, euler, gripper = self.parse_action(action)
        position = np.clip(position, self.config.workspace_low, self.config.workspace_high)
        euler = (euler + math.pi) % (2 * math.pi) - math.pi
        self.target_position, self.target_euler = position, euler
        self.gripper_action = 1.0 if gripper > 0 else -1.0
        pb.setJointMotorControlArray(self.robot, list(sc.PANDA_ARM_JOINTS), pb.POSITION_CONTROL,
                                     targetPositions=self._arm_targets(position, euler), forces=_ARM_FORCES,
                                     physicsClientId=self.client)
        self._command_gripper(self.gripper_action)
        self.motion.before_step(self)
        for _ in range(self.config.physics_substeps):
            self.motion.before_substep(self)
            pb.stepSimulation(physicsClientId=self.client)
            self._watch_button()  # every substep: a quick tap must not slip between control steps
        self._update_lights()
        self.steps += 1
        return self.get_obs(), 0.0, False, self.get_info()

    # ---------------------------------------------------------------------------------------- lights
    def _watch_button(self) -> None:
        pressed = self._table_joint(sc.BUTTON_JOINT) < sc.BUTTON_PRESSED_BELOW
        if pressed and not self._button_was_pressed:  # toggle on the press, not while held down
            self.led_on = not self.led_on
        self._button_was_pressed = pressed

    def _update_lights(self) -> None:
        switch = self._table_joint(sc.SWITCH_JOINT)
        if switch > sc.SWITCH_ON_ABOVE:
            self.lightbulb_on = True
        elif switch < sc.SWITCH_OFF_BELOW:
            self.lightbulb_on = False
        self._update_light_visuals()

    def _update_light_visuals(self) -> None:
        links = self.handles.table_links
        pb.changeVisualShape(self.table, links["led_link"], rgbaColor=sc.LED_ON_RGBA if self.led_on
                             else sc.LED_OFF_RGBA, physicsClientId=self.client)
        pb.changeVisualShape(self.table, links["lightbulb_link"], rgbaColor=sc.BULB_ON_RGBA
                             if self.lightbulb_on else sc.BULB_OFF_RGBA, physicsClientId=self.client)

    # ---------------------------------------------------------------------------------------- CALVIN-D
    def begin_subtask(self, task: str) -> None:
        """Tell the environment which subtask starts now; with ``config.dynamic`` set, the target block
        of a grasp-related subtask starts moving (CALVIN-D)."""
        check_task_names([task])
        self.motion.stop()
        if self.config.dynamic is not None and task in DYNAMIC_TASKS:
            self.motion.start(self, DYNAMIC_TASKS[task])

    def set_dynamic(self, mode: str | None, speed: float | None = None) -> None:
        """Switch CALVIN-D motion (None, "left", "forward", "diagonal", "circle") and its speed (m/s)
        for the subtasks that begin from now on; a bad value raises ValueError and changes nothing."""
        previous = (self.config.dynamic, self.config.dynamic_speed)
        self.config.dynamic = mode
        if speed is not None:
            self.config.dynamic_speed = speed
        try:
            self.config.validate()
        except ValueError:
            self.config.dynamic, self.config.dynamic_speed = previous
            raise

