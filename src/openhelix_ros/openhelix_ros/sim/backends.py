"""What differs between the two simulators behind the bridge, in one place: where a chain starts.

``embedded`` (this project's play table) draws a start state for a symbolic condition from the chain's
seed (``protocol.state_for_condition``); ``calvin`` (the real calvin_env) uses CALVIN's own start states
(``calvin_states.calvin_state_for_condition``), which depend on the condition only, as in CALVIN's
evaluation. Both in the backend's own world frame, as ``reset_scene`` takes them.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("embedded", "calvin")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def start_state(backend: str, condition: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(robot_obs, scene_obs) a chain with start ``condition`` begins from on ``backend``; ``rng`` draws
    the embedded play table's randomised placements (calvin's states do not use it)."""
    if check_backend(backend) == "calvin":
        from openhelix_ros.sim.calvin_states import calvin_state_for_condition

        return calvin_state_for_condition(condition)
    from openhelix_ros.sim.protocol import state_for_condition

    return state_for_condition(condition, rng)
