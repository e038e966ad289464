"""The Asy(N) timing rules of common/timing.py: which step's latent a plan uses, stamps to steps."""

from __future__ import annotations

import pytest

from openhelix_ros.common.timing import encodes_step, latent_step_for_plan, stamp_to_step

STEP_NS = 1_000_000_000 / 30


def step_stamp(step: int) -> int:
    return int(round(step * STEP_NS))


# ----- Asy(N) ---------------------------------------------------------------------------------------


def test_asy_n_latent_of_the_previous_period():
    # N = 3: steps 0-5 use step 0's latent (first period and the one after it), 6-8 use step 3's, ...
    assert [latent_step_for_plan(t, 3) for t in range(12)] == [0, 0, 0, 0, 0, 0, 3, 3, 3, 6, 6, 6]
    # Ages from the second period on are between N and 2N - 1 steps.
    ages = [t - latent_step_for_plan(t, 5) for t in range(10, 200)]
    assert min(ages) == 5 and max(ages) == 9
    assert [latent_step_for_plan(t, 0) for t in range(5)] == [0, 1, 2, 3, 4]  # synchronous
    assert [t for t in range(10) if encodes_step(t, 3)] == [0, 3, 6, 9]
    assert all(encodes_step(t, 0) for t in range(10))
    with pytest.raises(ValueError):
        latent_step_for_plan(4, -1)


def test_stamps_convert_to_steps_exactly():
    assert [stamp_to_step(step_stamp(t)) for t in range(0, 10000, 97)] == list(range(0, 10000, 97))
    assert stamp_to_step(0) == 0


# ----- System 2 -------------------------------------------------------------------------------------


