"""NodeHealth and WorkerSupervisor without ROS: what /diagnostics reports, failures survived, hangs seen."""

from __future__ import annotations

import pytest

from openhelix_ros.common.health import ERROR, MAX_REASONS, OK, OTHER_REASONS, WARN, NodeHealth, reason_key
from openhelix_ros.common.supervision import WorkerGaveUp, WorkerSupervisor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def by_name(statuses):
    return {status.name: status for status in statuses}


def test_rates_are_per_report_period_and_counts_total():
    clock = Clock()
    health = NodeHealth("system1", clock=clock)
    for _ in range(3):
        health.received("points")
    health.published("ee_trajectory")
    first = dict(by_name(health.statuses())["system1: node"].values)
    assert first["in points"] == "3 messages" and first["out ee_trajectory"] == "1 messages"
    clock.now += 2.0
    for _ in range(10):
        health.received("points")
    second = dict(by_name(health.statuses())["system1: node"].values)
    assert second["in points"] == "13 messages, 5.0 Hz"
    assert second["out ee_trajectory"] == "1 messages, 0.0 Hz"


def test_drops_are_counted_by_reason_with_numbers_folded_and_warn_only_while_recent():
    clock = Clock()
    health = NodeHealth("system2", clock=clock)
    health.dropped("image", "image of 640x480 is larger than 320x240")
    health.dropped("image", "image of 641x480 is larger than 320x240")
    health.dropped("instruction", "1200 characters, limit 1000")
    drops = by_name(health.statuses())["system2: dropped messages"]
    assert drops.level == WARN and drops.message.startswith("3 dropped")
    assert dict(drops.values) == {"dropped image: image of #x# is larger than #x#": "2",
                                  "dropped instruction: # characters, limit #": "1"}
    clock.now += 1.0
    quiet = by_name(health.statuses())["system2: dropped messages"]
    assert quiet.level == OK and quiet.message == "0 dropped in the last 1.0 s, 3 in total"


def test_distinct_reasons_are_bounded():
    health = NodeHealth("bridge")
    for index in range(MAX_REASONS + 50):
        health.dropped("ee_trajectory", f"reason {'x' * index}")
    reasons = health.drop_counts()["ee_trajectory"]
    assert len(reasons) == MAX_REASONS + 1 and reasons[OTHER_REASONS] == 50
    assert len(reason_key("y" * 10_000)) == 120


def test_a_flagged_value_sets_the_node_level_and_message():
    health = NodeHealth("system1")
    health.set_value("latent age", "0.2 s")
    assert by_name(health.statuses())["system1: node"].level == OK
    health.set_value("arm", "stopped: latent 3.1 s old (limit 2 s)", WARN)
    node = by_name(health.statuses())["system1: node"]
    assert node.level == WARN and node.message == "arm: stopped: latent 3.1 s old (limit 2 s)"


def test_a_failing_job_is_logged_with_its_traceback_and_the_worker_carries_on():
    logged = []
    supervisor = WorkerSupervisor("inference", deadline=10.0, max_consecutive_failures=3, log_error=logged.append)

    def boom():
        raise RuntimeError("CUDA out of memory")

    assert supervisor.run("encode image 1", boom) == (False, None)
    assert "Traceback" in logged[0] and "CUDA out of memory" in logged[0] and "failure 1 of 3" in logged[0]
    assert supervisor.run("encode image 2", lambda: 7) == (True, 7)
    report = supervisor.report()
    assert (report.jobs, report.failures, report.consecutive_failures) == (2, 1, 0)
    assert "encode image 1" in report.last_error


def test_bad_input_is_the_callers_and_not_a_failure():
    supervisor = WorkerSupervisor("inference", deadline=10.0, log_error=pytest.fail)

    def bad():
        raise ValueError("latent has 3 values, expected 512")

    with pytest.raises(ValueError, match="expected 512"):
        supervisor.run("plan", bad)
    assert supervisor.report().failures == 0


def test_lasting_failures_make_the_worker_give_up():
    supervisor = WorkerSupervisor("inference", deadline=10.0, max_consecutive_failures=2, log_error=lambda _: None)

    def boom():
        raise OSError("device lost")

    supervisor.run("job 1", boom)
    with pytest.raises(WorkerGaveUp, match="failed on 2 jobs in a row"):
        supervisor.run("job 2", boom)


def test_a_job_past_its_deadline_is_a_hang_reported_on_diagnostics():
    clock = Clock()
    supervisor = WorkerSupervisor("system1-inference", deadline=5.0, clock=clock)
    health = NodeHealth("system1", clock=clock)
    health.watch(supervisor)
    seen = []

    def job():
        seen.append(supervisor.hung())
        clock.now += 6.0
        seen.append(supervisor.hung())
        seen.append(by_name(health.statuses())["system1: worker system1-inference"])

    supervisor.run("plan for the cloud at 1.000 s", job)
    assert seen[0] is None
    assert seen[1] == ("worker 'system1-inference' hung: plan for the cloud at 1.000 s has run for 6.0 s "
                       "(worker_deadline 5 s)")
    assert seen[2].level == ERROR and seen[2].message == seen[1]
    # Returning late does not undo it: the worker broke its bound, and the node is to be restarted.
    assert supervisor.hung() == ("worker 'system1-inference' hung: plan for the cloud at 1.000 s ran for 6.0 s "
                                 "(worker_deadline 5 s)")
    punctual = WorkerSupervisor("other", deadline=5.0, clock=clock)
    punctual.run("quick", lambda: None)
    assert punctual.hung() is None
    with pytest.raises(ValueError, match="deadline must be > 0"):
        WorkerSupervisor("x", deadline=0)
