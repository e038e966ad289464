"""The calvin_env backend: exercised when the user has CALVIN installed, skipped (with the reason)
otherwise; without it, asking for it fails with instructions."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.sim import make_env
from openhelix_ros.sim.calvin_backend import calvin_available


@pytest.mark.skipif(calvin_available(), reason="calvin_env is installed; the missing-backend message is moot")
def test_missing_calvin_env_is_explained():
    with pytest.raises(RuntimeError, match="calvin_env.*not installed"):
        make_env(backend="calvin")


def test_calvin_backend_interface():
    pytest.importorskip("calvin_env", reason="calvin_env (CALVIN's simulator) is not installed; it is not on PyPI")
    env = make_env(backend="calvin", seed=0)
    try:
        obs = env.reset()
        assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3)
        assert obs["robot_obs"].shape == (15,) and obs["scene_obs"].shape == (24,)
        start = env.get_info()
        obs, _, _, info = env.step(np.zeros(7))
        assert env.tasks.get_task_info_for_set(start, info, {"open_drawer"}) == set()
        with pytest.raises(ValueError):
            env.step(np.full(7, np.nan))
    finally:
        env.close()
