"""CALVIN's evaluation protocol: chain sampling (valid, seeded, deterministic), start states, and the
average-length bookkeeping."""

from __future__ import annotations

import numpy as np

from openhelix_ros.sim import TASKS, evaluate_chains, sample_chains
from openhelix_ros.sim.expert import expert_policy
from openhelix_ros.sim.protocol import (
    TASK_CATEGORIES,
    ChainResult,
    EvaluationSummary,
    chain_is_valid,
    initial_conditions,
    state_for_condition,
)


def test_initial_conditions_follow_calvins_filter():
    states = initial_conditions()
    assert len(states) == 192
    for state in states:
        places = [state[f"{c}_block"] for c in ("red", "blue", "pink")]
        assert places.count("table") in (1, 2)
        assert places.count("slider_left") < 2 and places.count("slider_right") < 2
        assert state["grasped"] == 0


def test_chains_are_valid_distinct_category_and_deterministic():
    chains = sample_chains(200, seed=0)
    assert len(chains) == 200
    for initial_state, tasks in chains:
        assert len(tasks) == 5 and set(tasks) <= set(TASKS)
        assert len({TASK_CATEGORIES[t] for t in tasks}) == 5
        assert chain_is_valid(initial_state, tasks)
    assert sample_chains(200, seed=0) == chains
    assert sample_chains(200, seed=1) != chains
    # Spread over the start states like CALVIN's: every state gets one or two of 200 chains.
    counts = {}
    for initial_state, _ in chains:
        key = tuple(sorted(initial_state.items()))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts.values()) <= {1, 2} and len(counts) == 192


def test_invalid_chains_are_rejected():
    state = initial_conditions()[0]
    assert not chain_is_valid(state, ["open_drawer", "open_drawer", "turn_on_led", "stack_block", "unstack_block"])
    drawer_open = {**state, "drawer": "open"}
    assert not chain_is_valid(drawer_open, ["open_drawer", "turn_on_led", "move_slider_left",
                                            "push_red_block_left", "unstack_block"])


def test_state_for_condition_is_seeded_and_matches_the_condition(env):
    condition = {**initial_conditions()[5], "drawer": "open", "lightbulb": 1, "led": 0, "slider": "left"}
    a = state_for_condition(condition, np.random.default_rng(3))
    b = state_for_condition(condition, np.random.default_rng(3))
    np.testing.assert_array_equal(a[1], b[1])
    env.reset(robot_obs=a[0], scene_obs=a[1])
    scene = env.get_scene_obs()
    assert scene[0] > 0.17 and scene[1] > 0.12 and scene[4] == 1.0 and scene[5] == 0.0


def test_summary_average_length_is_the_sum_of_success_rates():
    summary = EvaluationSummary([ChainResult({}, ["a"] * 5, completed) for completed in (0, 1, 3, 5)])
    assert summary.success_rates == [0.75, 0.5, 0.5, 0.25, 0.25]
    assert summary.average_length == sum(summary.success_rates) == 2.25


def test_evaluate_one_chain_with_the_expert(env):
    chains = sample_chains(40, seed=0)[:1]
    summary = evaluate_chains(env, expert_policy(env), chains)
    result = summary.chains[0]
    assert result.tasks == chains[0][1]
    assert 0 <= result.completed <= 5 and len(result.steps) >= min(result.completed + 1, 5)
    assert summary.average_length == result.completed
    assert summary.to_dict()["num_chains"] == 1
