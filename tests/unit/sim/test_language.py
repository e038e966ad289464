"""The three instruction sets: one evaluation instruction per task, disjoint training phrasings and
at least ten CALVIN-E style paraphrases per task."""

from __future__ import annotations

import pytest

from openhelix_ros.sim import TASKS
from openhelix_ros.sim.language import (
    ENRICHED,
    EVALUATION,
    TRAINING,
    evaluation_instruction,
    task_for_instruction,
)


def test_every_task_has_all_three_sets():
    assert set(EVALUATION) == set(TRAINING) == set(ENRICHED) == set(TASKS)
    for task in TASKS:
        assert isinstance(EVALUATION[task], str) and EVALUATION[task]
        assert len(TRAINING[task]) >= 2
        assert len(ENRICHED[task]) >= 10 and len(set(ENRICHED[task])) == len(ENRICHED[task])


def test_sets_are_disjoint_and_unambiguous():
    evaluation = set(EVALUATION.values())
    training = {p for phrases in TRAINING.values() for p in phrases}
    enriched = {p for phrases in ENRICHED.values() for p in phrases}
    assert len(evaluation) == 34
    assert not evaluation & training and not evaluation & enriched and not training & enriched
    every = list(EVALUATION.values()) + [p for t in TASKS for p in TRAINING[t] + ENRICHED[t]]
    assert len(every) == len(set(every))  # no phrase belongs to two tasks


def test_instruction_round_trip():
    for task in TASKS:
        assert task_for_instruction(evaluation_instruction(task)) == task
        assert task_for_instruction(ENRICHED[task][3].upper()) == task
    with pytest.raises(ValueError, match="empty"):
        task_for_instruction("   ")
    with pytest.raises(ValueError, match="not one of"):
        task_for_instruction("make me a sandwich")
