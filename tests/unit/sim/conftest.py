"""Shared fixture for the embedded simulator tests: one unrendered environment per test module (its
start-up costs about a second)."""

from __future__ import annotations

import pytest

from openhelix_ros.sim import make_env


@pytest.fixture(scope="module")
def env():
    environment = make_env(render=False, seed=0)
    yield environment
    environment.close()
