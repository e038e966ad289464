"""Single-subtask episodes of chosen tasks (the evaluator's ``tasks`` parameter, ``openhelix demo
--tasks``): the per-task success of a policy trained on a few tasks, which CALVIN's chains of five
would never reach. Driven through the ROS-free core with the scripted world of test_evaluation_core."""

from __future__ import annotations

import pytest

from openhelix_ros.evaluation.core import (
    CheckTasks,
    EvaluationConfig,
    EvaluationError,
    EvaluationRun,
    PublishInstruction,
    ResetScene,
    per_task_stats,
    task_episodes,
)
from openhelix_ros.sim.protocol import conditions_for_task, next_states

TASKS = ("open_drawer", "turn_on_led", "move_slider_left")


def drive(run: EvaluationRun, steps_needed: dict[str, int]) -> list[ResetScene]:
    """A scripted world: a task in ``steps_needed`` completes that many steps after its instruction, any
    other never. Returns the resets the run asked for."""
    queue, resets, step, start, now = list(run.start(0.0)), [], 0, 0, 0.0
    for _ in range(10_000):
        if not queue:
            if run.finished:
                return resets
            step, now = step + 1, now + 1 / 30
            queue.extend(run.on_scene_state(now, step))
            continue
        command = queue.pop(0)
        if isinstance(command, ResetScene):
            resets.append(command)
            step = 0
            queue.extend(run.on_reset_done(now, True, ("state", 0), step=0))
        elif isinstance(command, PublishInstruction):
            start = step
        elif isinstance(command, CheckTasks):
            needed = steps_needed.get(command.tasks[0])
            done = needed is not None and step - start >= needed
            queue.extend(run.on_check_result(now, True, command.tasks if done else [], ("state", step), step))
    raise AssertionError("the run did not finish")


def test_episodes_take_the_tasks_in_turn_from_valid_start_states():
    episodes = task_episodes(7, 5, TASKS)
    assert [tasks for _, tasks in episodes] == [[TASKS[i % 3]] for i in range(7)]
    for condition, (task,) in episodes:
        assert condition in conditions_for_task(task) and next_states(condition, task)
    assert task_episodes(7, 5, TASKS) == episodes  # the seed fixes them
    assert task_episodes(30, 6, TASKS) != task_episodes(30, 5, TASKS)


def test_a_run_over_tasks_counts_one_subtask_per_episode():
    run = EvaluationRun(EvaluationConfig(num_sequences=6, seed=1, episode_length=20, tasks=TASKS))
    # the LED takes longer than the budget, the slider never moves
    resets = drive(run, {"open_drawer": 5, "turn_on_led": 30})
    assert run.status == "completed"
    assert [r.tasks for r in run.records] == [[TASKS[i % 3]] for i in range(6)]
    assert [r.completed for r in run.records] == [1, 0, 0] * 2
    assert len(resets) == 6
    summary = run.summary()
    assert summary.success_rates[0] == pytest.approx(2 / 6) and summary.success_rates[1:] == [0.0] * 4
    stats = per_task_stats(run.records)
    assert stats["open_drawer"]["successes"] == 2 and stats["turn_on_led"]["successes"] == 0


def test_bad_task_lists_are_named():
    with pytest.raises(EvaluationError, match="unknown task"):
        EvaluationConfig(num_sequences=1, tasks=("open_the_pod_bay_doors",)).validate()
    with pytest.raises(EvaluationError, match="place_in_drawer"):
        EvaluationConfig(num_sequences=1, tasks=("place_in_drawer",)).validate()
    # blanks (the evaluator's [""] default) mean CALVIN's chains
    config = EvaluationConfig(num_sequences=2, tasks=("",)).validate()
    assert config.tasks == () and all(len(tasks) == 5 for _, tasks in EvaluationRun(config).chains)
