"""The real ``calvin_env`` behind the embedded simulator's interface (``make_env(backend="calvin")``).

calvin_env is not on PyPI: a user installs CALVIN per its own instructions (``pip install -e`` of
calvin_env, with its tacto and pybullet dependencies). This adapter then builds CALVIN's
``PlayTableSimEnv`` either from a dataset split (``dataset_path=.../validation``, as CALVIN's own
evaluation does) or from calvin_env's packaged Hydra configuration, and uses CALVIN's own task oracle
(``conf/tasks/new_playtable_tasks.yaml``). Nothing from CALVIN is copied here; it is imported.

Not exercised on this project's machines (calvin_env is absent there): the tests skip with a reason.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass

import numpy as np

from openhelix_ros.sim.backends import CALVIN_DEFAULT_SCENE
from openhelix_ros.sim.config import DYNAMIC_MODES
from openhelix_ros.sim.dynamic import DYNAMIC_TASKS
from openhelix_ros.sim.env import ROBOT_OBS_SIZE, SCENE_OBS_SIZE, _as_finite_vector
from openhelix_ros.sim.tasks import check_task_names

# The cameras the bridge publishes: a dataset split's config may also hold a tactile camera (tacto).
CAMERA_OBS_SPACE = {"rgb_obs": ["rgb_static", "rgb_gripper"], "depth_obs": ["depth_static", "depth_gripper"]}
CIRCLE_RADIUS = 0.04  # m, as the play table's CALVIN-D circle
DYNAMIC_AMPLITUDE = 0.08  # m a linear motion goes before it turns back, as on the play table


def calvin_available() -> bool:
    """True when ``calvin_env`` can be imported."""
    try:
        importlib.import_module("calvin_env")
    except ImportError:
        return False
    return True


def _require_calvin():
    try:
        return importlib.import_module("calvin_env")
    except ImportError as error:
        raise RuntimeError(
            "backend='calvin' needs calvin_env, which is not installed (it is not on PyPI): clone "
            "https://github.com/mees/calvin with --recurse-submodules and `pip install -e calvin_env` "
            "into this environment, or use backend='embedded'") from error


class CalvinEnvAdapter:
    """CALVIN's ``PlayTableSimEnv`` with ``make_env``'s interface (reset/step/get_obs/get_info/tasks,
    camera_info, begin_subtask for CALVIN-D, reset_to_condition for the evaluation protocol)."""

    backend = "calvin"

    def __init__(self, dynamic: str | None = None, seed: int = 0, dataset_path: str | None = None,
                 dynamic_speed: float = 0.02, show_gui: bool = False, robot: str = "panda_longer_finger",
                 use_egl: bool = True, render: bool = True, scene: str = CALVIN_DEFAULT_SCENE):
        """``dataset_path``: a CALVIN split (``.../validation``) whose ``.hydra/merged_config.yaml`` builds
        the env, as CALVIN's evaluation does (its robot and scene; only the static and gripper cameras
        are made, so a split recorded with the tactile camera needs no tacto). Without it, calvin_env's
        packaged data-collection config with ``robot`` (a conf/robot name: panda_longer_finger, as
        CALVIN's data was recorded, or panda) and the static and gripper cameras. ``use_egl``: render
        with the EGL plugin (calvin's default; headless GPU or llvmpipe) or pybullet's TinyRenderer.
        ``render=False`` makes no camera at all (state only: for the scripted expert and tests).
        ``scene``: a calvin_env conf/scene name (calvin_scene_D, CALVIN's evaluation scene, or A, B, C)."""
        if dynamic is not None and dynamic not in DYNAMIC_MODES:
            raise ValueError(f"dynamic must be None or one of {DYNAMIC_MODES}, got {dynamic!r}")
        calvin_env = _require_calvin()
        import hydra
        from omegaconf import OmegaConf

        package_dir = os.path.dirname(os.path.dirname(calvin_env.__file__))
        robots = sorted(name[:-5] for name in os.listdir(os.path.join(package_dir, "conf", "robot"))
                        if name.endswith(".yaml"))
        if robot not in robots:
            raise ValueError(f"unknown calvin_env robot config {robot!r}; choose one of {', '.join(robots)}")
        if dataset_path is not None:
            if robot != "panda_longer_finger" or scene != CALVIN_DEFAULT_SCENE:
                raise ValueError("robot and scene are set by the dataset split's own config; leave them out "
                                 "with dataset_path")
            merged = os.path.join(dataset_path, ".hydra", "merged_config.yaml")
            if not os.path.isfile(merged):
                raise ValueError(f"dataset_path {dataset_path!r} is not a CALVIN split: no {merged}")
            from calvin_env.envs.play_table_env import get_env

            obs_space = CAMERA_OBS_SPACE if render else {"rgb_obs": [], "depth_obs": []}
            self.env = get_env(dataset_path, obs_space=obs_space, show_gui=show_gui)
            scene_cfg = OmegaConf.to_container(OmegaConf.load(merged).scene, resolve=False)
            self.scene_name = os.path.basename(os.path.normpath(dataset_path))
        else:
            from openhelix_ros.sim.calvin_geometry import calvin_scenes, scene_config

            if scene not in calvin_scenes():
                raise ValueError(f"unknown calvin_env scene {scene!r}; choose one of {', '.join(calvin_scenes())}")
            conf_dir = os.path.join(package_dir, "conf")
            with hydra.initialize_config_dir(config_dir=conf_dir, version_base=None):
                cfg = hydra.compose("config_data_collection.yaml", overrides=[
                    f"cameras={'static_and_gripper' if render else 'no_cameras'}", f"robot={robot}",
                    f"scene={scene}", f"env.use_egl={str(bool(use_egl)).lower()}"])
            self.env = hydra.utils.instantiate(cfg.env, show_gui=show_gui, use_vr=False, use_scene_info=True)
            scene_cfg, self.scene_name = scene_config(scene), scene
        self._scene_cfg = scene_cfg
        self._geometry = None
        tasks_cfg = OmegaConf.load(os.path.join(package_dir, "conf", "tasks", "new_playtable_tasks.yaml"))
        self.tasks = hydra.utils.instantiate(tasks_cfg)
        self.dynamic = dynamic
        self.dynamic_speed = dynamic_speed
        self.seed = seed
        self.steps = 0
        self._closed = False
        self._moving: _BlockMotion | None = None
        self._reseed(seed)

    # -------------------------------------------------------------------------- calvin_env's API
    def _reseed(self, seed: int) -> None:
        """Seed calvin's scene sampler. Its scene and every movable object hold the Generator the env
        made at start-up, and ``env.seed`` would make a new one they never see: re-seed that one in place."""
        import gym.utils.seeding

        if not hasattr(self.env.np_random, "bit_generator"):
            raise RuntimeError("calvin_env's scene sampler is not a numpy Generator: install gym 0.26.2 "
                               "(pip install gym==0.26.2), as the README says")
        fresh, _ = gym.utils.seeding.np_random(int(seed))
        self.env.np_random.bit_generator.state = fresh.bit_generator.state
        self.np_random = self.env.np_random

    def reset(self, robot_obs=None, scene_obs=None, seed: int | None = None) -> dict:
        if seed is not None:
            self._reseed(seed)
        if robot_obs is not None:
            robot_obs = _as_finite_vector(robot_obs, ROBOT_OBS_SIZE, "robot_obs")
        if scene_obs is not None:
            scene_obs = _as_finite_vector(scene_obs, SCENE_OBS_SIZE, "scene_obs")
        self.steps = 0
        self._moving = None
        # calvin's robot.reset leaves the last gripper command in place (robot_obs[14] would report the
        # previous episode's): the start state's command, open when none is given.
        self.env.robot.gripper_action = 1 if robot_obs is None or robot_obs[14] > 0 else -1
        return self.env.reset(robot_obs=robot_obs, scene_obs=scene_obs)

    def reset_to_condition(self, condition: dict, seed: int | None = None) -> dict:
        """CALVIN's own start state for a symbolic condition (sim/calvin_states.py)."""
        from openhelix_ros.sim.calvin_states import calvin_state_for_condition

        robot_obs, scene_obs = calvin_state_for_condition(condition)
        return self.reset(robot_obs=robot_obs, scene_obs=scene_obs, seed=seed)

    def step(self, action):
        """``(position, euler, gripper)`` absolute, or a 7-vector relative action (CALVIN's ranges, clipped
        to [-1, 1]); the gripper opens for a command > 0 and closes otherwise, as on the play table."""
        outcome = self.env.step(calvin_action(action))
        # The moving block advances after the step's observation, for the next one (it would otherwise
        # be moved between calvin's render and the state it reports).
        self._drive_moving_block()
        self.steps += 1
        return outcome

    def get_obs(self) -> dict:
        return self.env.get_obs()

    def get_info(self) -> dict:
        return self.env.get_info()

    def close(self) -> None:
        """Disconnect calvin's physics client once. calvin's ``__del__`` closes again, which would
        disconnect whatever client later reuses the id: after the first close the env no longer owns one."""
        if self._closed:
            return
        self._closed = True
        self.env.close()
        self.env.ownsPhysicsClient = False

    # -------------------------------------------------------------------------- extras
    @property
    def geometry(self):
        """This scene's ``SceneGeometry``, measured from calvin_env's files once (sim/calvin_geometry.py)."""
        if self._geometry is None:
            from openhelix_ros.sim.calvin_geometry import calvin_geometry, measure_scene

            self._geometry = (calvin_geometry(self.scene_name) if self.scene_name.startswith("calvin_scene_")
                              else measure_scene(self._scene_cfg, self.scene_name))
        return self._geometry

    def camera_info(self) -> dict:
        """Pinhole intrinsics from each CALVIN camera's fov and size; extrinsics from its OpenGL view
        view matrix (the gripper camera's as of the last render, i.e. of the last observation)."""
        info = {}
        for camera in self.env.cameras:
            name = "static" if "static" in camera.name else "gripper"
            focal = camera.height / (2.0 * math.tan(math.radians(camera.fov) / 2.0))
            intrinsics = np.array([[focal, 0, camera.width / 2], [0, focal, camera.height / 2], [0, 0, 1.0]])
            # The static camera keeps its view as viewMatrix; the gripper camera sets view_matrix at each
            # render (after get_obs: the view of that observation), else it is computed from its link now.
            view = getattr(camera, "viewMatrix", None) or getattr(camera, "view_matrix", None)
            if view is None and hasattr(camera, "gripper_cam_link"):
                view = _gripper_camera_view(self.env.p, camera)
            extrinsics = None
            if view is not None:
                world_to_gl = np.asarray(view, dtype=float).reshape(4, 4).T
                gl_to_world = np.linalg.inv(world_to_gl)
                # OpenGL camera (x right, y up, z backwards) -> OpenCV (x right, y down, z forward).
                extrinsics = gl_to_world @ np.diag([1.0, -1.0, -1.0, 1.0])
            info[name] = {"intrinsics": intrinsics, "extrinsics": extrinsics,
                          "width": camera.width, "height": camera.height}
        return info

    def begin_subtask(self, task: str) -> None:
        check_task_names([task])
        self._moving = None
        if self.dynamic is None or task not in DYNAMIC_TASKS:
            return
        block = DYNAMIC_TASKS[task]
        uid = self.env.scene.get_info()["movable_objects"][block]["uid"]
        directions = {"left": (-1.0, 0.0), "forward": (0.0, 1.0), "diagonal": (-0.7071, 0.7071)}
        direction = np.array(directions.get(self.dynamic, (1.0, 0.0)))
        origin = np.asarray(self.env.p.getBasePositionAndOrientation(uid, physicsClientId=self.env.cid)[0][:2])
        self._moving = _BlockMotion(uid, direction, origin)

    def _drive_moving_block(self) -> None:
        """CALVIN-D on calvin_env: calvin runs its 8 physics substeps inside ``step``, where a velocity set
        once per control step dies in friction (1.3 mm in 2 s measured instead of 40 mm). So the block is
        moved by ``dynamic_speed / control_freq`` after each step, its horizontal velocity zeroed, until
        the robot touches it; circles turn the direction by the swept angle. As on the play table, a
        linear motion turns back after ``DYNAMIC_AMPLITUDE`` and any motion at the edge of the desk's
        free strip (the scene geometry's ``dynamic_strip``), so the block stays on the desk."""
        motion = self._moving
        if motion is None:
            return
        p, client = self.env.p, self.env.cid
        if p.getContactPoints(bodyA=motion.uid, bodyB=self.env.robot.robot_uid, physicsClientId=client):
            self._moving = None
            return
        step = self.dynamic_speed / float(getattr(self.env, "control_freq", 30))
        if self.dynamic == "circle":
            angle = motion.sign * step / CIRCLE_RADIUS
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            motion.direction = rotation @ motion.direction
        position, orientation = p.getBasePositionAndOrientation(motion.uid, physicsClientId=client)
        xy = np.asarray(position[:2])
        heading = motion.sign * motion.direction
        travelled = float(np.dot(xy - motion.origin, motion.direction))
        (x0, x1), (y0, y1) = self.geometry.dynamic_strip

        def inside(point) -> bool:
            return bool(x0 < point[0] < x1 and y0 < point[1] < y1)

        # Turn at the strip's edge only from inside it: a block that starts outside would otherwise turn
        # on every step and stand still.
        leaving = inside(xy) and not inside(xy + heading * 0.01)
        if leaving or (self.dynamic != "circle" and motion.sign * travelled > DYNAMIC_AMPLITUDE):
            motion.sign = -motion.sign
            heading = -heading
        moved = [position[0] + step * heading[0], position[1] + step * heading[1], position[2]]
        p.resetBasePositionAndOrientation(motion.uid, moved, orientation, physicsClientId=client)
        linear, _ = p.getBaseVelocity(motion.uid, physicsClientId=client)
        p.resetBaseVelocity(motion.uid, [0.0, 0.0, linear[2]], [0.0, 0.0, 0.0], physicsClientId=client)


@dataclass
class _BlockMotion:
    """The CALVIN-D block being driven: its body, the way it goes (sign +-1 flips it), where it started."""

    uid: int
    direction: np.ndarray
    origin: np.ndarray
    sign: float = 1.0


def calvin_action(action):
    """An action of this project's simulator interface in calvin_env's conventions: absolute
    ``(position (3,), euler (3,), gripper)`` with the gripper an int +-1 (calvin calls ``len()`` on
    anything else), or a relative 7-vector clipped to [-1, 1] with its gripper made exactly +-1 (calvin
    asserts it). A gripper command > 0 opens; anything else closes (0 too), as on the play table."""
    if isinstance(action, tuple) and len(action) == 3:
        position = _as_finite_vector(action[0], 3, "absolute action position")
        euler = _as_finite_vector(action[1], 3, "absolute action euler")
        gripper = _as_finite_vector(np.ravel(action[2]), 1, "gripper action")[0]
        return position, euler, 1 if gripper > 0 else -1
    relative = np.clip(_as_finite_vector(np.ravel(action), 7, "action"), -1.0, 1.0)
    relative[6] = 1.0 if relative[6] > 0 else -1.0
    return relative


def _gripper_camera_view(p, camera) -> tuple:
    """calvin's GripperCamera view matrix for the gripper's current pose (what its render computes)."""
    state = p.getLinkState(bodyUniqueId=camera.robot_uid, linkIndex=camera.gripper_cam_link,
                           physicsClientId=camera.cid)
    position, orientation = np.asarray(state[0]), state[1]
    rotation = np.asarray(p.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    return p.computeViewMatrix(position, position + rotation[:, 1], -rotation[:, 2])
