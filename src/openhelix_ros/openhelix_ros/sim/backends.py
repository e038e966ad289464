"""What differs between the simulators behind the bridge, in one place: where a chain starts, the
scene's geometry (what the scripted expert reaches for) and the workspace box (what the bridge
accepts and System 1 clips its plans to).

``embedded`` (this project's play table) draws a start state for a symbolic condition from the chain's
seed (``protocol.state_for_condition``); ``calvin`` (the real calvin_env) uses CALVIN's own start states
(``calvin_states.calvin_state_for_condition``), which depend on the condition only, as in CALVIN's
evaluation. Both in the backend's own world frame, as ``reset_scene`` takes them. The play table's
geometry is its own constants (``sim/scene.py``); calvin's is measured from calvin_env's scene
(``sim/calvin_geometry.py``, calvin_scene_D unless a scene is named).
"""

from __future__ import annotations

import numpy as np

from openhelix_ros.sim.geometry import SceneGeometry, play_table_geometry

BACKENDS = ("embedded", "calvin")
CALVIN_DEFAULT_SCENE = "calvin_scene_D"  # CALVIN's evaluation scene, and calvin_env's default


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def scene_geometry(backend: str, scene: str | None = None) -> SceneGeometry:
    """The geometry of ``backend``'s scene (calvin: ``scene``, a calvin_env conf/scene name)."""
    if check_backend(backend) == "calvin":
        from openhelix_ros.sim.calvin_geometry import calvin_geometry

        return calvin_geometry(scene or CALVIN_DEFAULT_SCENE)
    if scene not in (None, "", "play_table"):
        raise ValueError(f"the embedded backend has one scene, play_table; got {scene!r}")
    return play_table_geometry()


def workspace(backend: str, scene: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(low, high) corners of ``backend``'s workspace box, world frame."""
    geometry = scene_geometry(backend, scene)
    return tuple(geometry.workspace_low), tuple(geometry.workspace_high)


def start_state(backend: str, condition: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(robot_obs, scene_obs) a chain with start ``condition`` begins from on ``backend``; ``rng`` draws
    the embedded play table's randomised placements (calvin's states do not use it)."""
    if check_backend(backend) == "calvin":
        from openhelix_ros.sim.calvin_states import calvin_state_for_condition

        return calvin_state_for_condition(condition)
    from openhelix_ros.sim.protocol import state_for_condition

    return state_for_condition(condition, rng)
