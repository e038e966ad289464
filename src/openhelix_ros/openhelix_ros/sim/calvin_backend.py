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

import numpy as np

from openhelix_ros.sim.config import DYNAMIC_MODES
from openhelix_ros.sim.dynamic import DYNAMIC_TASKS
from openhelix_ros.sim.env import ROBOT_OBS_SIZE, SCENE_OBS_SIZE, _as_finite_vector
from openhelix_ros.sim.tasks import check_task_names


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
                 dynamic_speed: float = 0.02, show_gui: bool = False):
        if dynamic is not None and dynamic not in DYNAMIC_MODES:
            raise ValueError(f"dynamic must be None or one of {DYNAMIC_MODES}, got {dynamic!r}")
        calvin_env = _require_calvin()
        import hydra
        from omegaconf import OmegaConf

        package_dir = os.path.dirname(os.path.dirname(calvin_env.__file__))
        if dataset_path is not None:
            from calvin_env.envs.play_table_env import get_env

            self.env = get_env(dataset_path, show_gui=show_gui)
        else:
            conf_dir = os.path.join(package_dir, "conf")
            with hydra.initialize_config_dir(config_dir=conf_dir, version_base=None):
                cfg = hydra.compose("config_data_collection.yaml", overrides=["cameras=static_and_gripper"])
            self.env = hydra.utils.instantiate(cfg.env, show_gui=show_gui, use_vr=False, use_scene_info=True)
        tasks_cfg = OmegaConf.load(os.path.join(package_dir, "conf", "tasks", "new_playtable_tasks.yaml"))
        self.tasks = hydra.utils.instantiate(tasks_cfg)
        self.dynamic = dynamic
        self.dynamic_speed = dynamic_speed
        self.seed = seed
        self.steps = 0
        self._moving: tuple[int, np.ndarray] | None = None
        self.np_random = np.random.default_rng(seed)

    # -------------------------------------------------------------------------- calvin_env's API
    def reset(self, robot_obs=None, scene_obs=None, seed: int | None = None) -> dict:
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        if robot_obs is not None:
            robot_obs = _as_finite_vector(robot_obs, ROBOT_OBS_SIZE, "robot_obs")
        if scene_obs is not None:
            scene_obs = _as_finite_vector(scene_obs, SCENE_OBS_SIZE, "scene_obs")
        self.steps = 0
        self._moving = None
        return self.env.reset(robot_obs=robot_obs, scene_obs=scene_obs)

    def reset_to_condition(self, condition: dict, seed: int | None = None) -> dict:
        """CALVIN's own mapping from a symbolic start condition to a state (calvin_agent)."""
        try:
            from calvin_agent.evaluation.utils import get_env_state_for_initial_condition
        except ImportError as error:
            raise RuntimeError("reset_to_condition on the calvin backend needs calvin_agent "
                               "(calvin_models) installed") from error
        robot_obs, scene_obs = get_env_state_for_initial_condition(condition)
        return self.reset(robot_obs=robot_obs, scene_obs=scene_obs, seed=seed)

    def step(self, action):
        if isinstance(action, tuple) and len(action) == 3:
            parts = (_as_finite_vector(action[0], 3, "absolute action position"),
                     _as_finite_vector(action[1], 3, "absolute action euler"),
                     _as_finite_vector(np.ravel(action[2]), 1, "gripper action")[0])
            action = parts
        else:
            action = np.clip(_as_finite_vector(np.ravel(action), 7, "action"), -1.0, 1.0)
        self._drive_moving_block()
        self.steps += 1
        return self.env.step(action)

    def get_obs(self) -> dict:
        return self.env.get_obs()

    def get_info(self) -> dict:
        return self.env.get_info()

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()

    # -------------------------------------------------------------------------- extras
    def camera_info(self) -> dict:
        """Pinhole intrinsics from each CALVIN camera's fov and size; extrinsics from its OpenGL view
        matrix when the camera exposes one (CALVIN's static camera does; the gripper camera computes
        its view per render, so its extrinsics are those of the last render)."""
        info = {}
        for camera in self.env.cameras:
            name = "static" if "static" in camera.name else "gripper"
            focal = camera.height / (2.0 * math.tan(math.radians(camera.fov) / 2.0))
            intrinsics = np.array([[focal, 0, camera.width / 2], [0, focal, camera.height / 2], [0, 0, 1.0]])
            view = getattr(camera, "viewMatrix", None)
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
        self._moving = (uid, direction)

    def _drive_moving_block(self) -> None:
        """CALVIN-D on calvin_env: set the block's planar velocity once per control step (calvin_env
        runs its own substeps inside ``step``); circles turn the direction by the swept angle."""
        if self._moving is None:
            return
        uid, direction = self._moving
        p, client = self.env.p, self.env.cid
        if p.getContactPoints(bodyA=uid, bodyB=self.env.robot.robot_uid, physicsClientId=client):
            self._moving = None
            return
        if self.dynamic == "circle":
            angle = self.dynamic_speed / 0.04 / 30.0
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            direction = rotation @ direction
            self._moving = (uid, direction)
        linear, angular = p.getBaseVelocity(uid, physicsClientId=client)
        velocity = self.dynamic_speed * direction
        p.resetBaseVelocity(uid, [velocity[0], velocity[1], linear[2]], angular, physicsClientId=client)
