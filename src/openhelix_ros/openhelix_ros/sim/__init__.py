"""The embedded CALVIN-style play table (PyBullet), ROS-free.

Public API (the bridge node and outside checks use these names)::

    from openhelix_ros.sim import make_env, sample_chains, ScriptedExpert, TASKS

    env = make_env(backend="embedded", dynamic=None, seed=0)   # or backend="calvin"
    obs = env.reset()
    obs, reward, done, info = env.step(action)
    env.tasks.get_task_info_for_set(start_info, end_info, {"open_drawer"})
    chains = sample_chains(1000, seed=0)            # [(initial_state, [5 task names]), ...]
    action = ScriptedExpert(env).act(obs, "open_drawer")
"""

from __future__ import annotations

from openhelix_ros.sim.backends import BACKENDS
from openhelix_ros.sim.cameras import fuse_point_cloud
from openhelix_ros.sim.config import DYNAMIC_MODES, PlayTableConfig
from openhelix_ros.sim.env import PlayTableEnv
from openhelix_ros.sim.expert import ScriptedExpert
from openhelix_ros.sim.protocol import (
    EPISODE_LENGTH,
    EvaluationSummary,
    evaluate_chains,
    sample_chains,
)
from openhelix_ros.sim.tasks import TASKS, TaskOracle


def make_env(backend: str = "embedded", dynamic: str | None = None, seed: int = 0, **options):
    """Create the simulator.

    ``backend="embedded"``: this project's PyBullet play table; ``options`` are ``PlayTableConfig``
    fields (e.g. ``render=False``, ``renderer="tiny"``, ``dynamic_speed=0.03``).
    ``backend="calvin"``: the real ``calvin_env`` (must be installed by the user) behind the same
    interface; ``options`` go to ``CalvinEnvAdapter``.
    ``dynamic``: None (CALVIN) or one of "left", "forward", "diagonal", "circle" (CALVIN-D).
    """
    if backend == "embedded":
        fields = set(PlayTableConfig.__dataclass_fields__)
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for the embedded simulator; "
                             f"known: {sorted(fields)}")
        return PlayTableEnv(PlayTableConfig(seed=seed, dynamic=dynamic, **options))
    if backend == "calvin":
        from openhelix_ros.sim.calvin_backend import CalvinEnvAdapter

        return CalvinEnvAdapter(dynamic=dynamic, seed=seed, **options)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


__all__ = [
    "BACKENDS", "DYNAMIC_MODES", "EPISODE_LENGTH", "TASKS", "EvaluationSummary", "PlayTableConfig",
    "PlayTableEnv", "ScriptedExpert", "TaskOracle", "evaluate_chains", "fuse_point_cloud", "make_env",
    "sample_chains",
]
