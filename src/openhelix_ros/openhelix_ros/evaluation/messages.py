"""The evaluator's progress as ROS messages (EvaluationProgress: stamped with the wall clock, even in sim
time, since it is for people and logs)."""

from __future__ import annotations

from rclpy.time import Time

from openhelix_msgs.msg import EvaluationProgress
from openhelix_ros.evaluation.core import ChainRecord, EvaluationRun


def progress_msg(run: EvaluationRun, wall_time: Time, elapsed: float, subtask_index: int, task: str,
                 instruction: str, chain_index: int | None = None, completed: int | None = None) -> EvaluationProgress:
    """Where ``run`` stands: at a subtask's start, or (``chain_index``, ``completed``) at a chain's end."""
    summary = run.summary()
    if completed is None:
        completed = run.current.completed if run.current else 0
    message = EvaluationProgress(
        run_name=run.config.run_name, variant=run.config.variant,
        chain_index=run.chain_index if chain_index is None else chain_index,
        num_chains=run.config.num_sequences, subtask_index=max(0, subtask_index), task=task,
        instruction=instruction, completed_in_chain=completed,
        success_rates=[float(r) for r in summary.success_rates], average_length=float(summary.average_length),
        elapsed=float(elapsed))
    message.header.stamp = wall_time.to_msg()
    return message


def chain_end_progress_msg(run: EvaluationRun, record: ChainRecord, wall_time: Time, elapsed: float) -> EvaluationProgress:
    """Progress at the end of chain ``record``: its last subtask, and how many subtasks it completed."""
    last = record.subtasks[-1] if record.subtasks else None
    return progress_msg(run, wall_time, elapsed, len(record.subtasks) - 1 if last else 0,
                        last.task if last else "", last.instruction if last else "",
                        chain_index=record.index, completed=record.completed)
