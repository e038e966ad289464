"""System 1's PlanScheduler (system1/core.py), driven with explicit times: when it plans, which latent
and pose it takes, how long it waits for them in lockstep, and what it says in the log."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.system1.core import LatentRecord, LatentSelector, PlanScheduler

RATE = 30.0


def stamp(step: int) -> int:
    return int(round(step * 1e9 / RATE))


def latent(step: int, sequence: int, received: float = 0.0) -> LatentRecord:
    return LatentRecord(latent=np.full(4, float(step), np.float32), sequence=sequence, stamp_ns=stamp(step),
                        observation_stamp_ns=stamp(step), received=received)


def cloud(scheduler: PlanScheduler, step: int, now: float) -> list:
    return scheduler.on_points(stamp(step), np.zeros((5, 3), np.float32), np.zeros((5, 3), np.uint8), now)


def pose(scheduler: PlanScheduler, step: int, x: float = 0.1) -> None:
    scheduler.on_pose(stamp(step), np.array([x, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]))


def lockstep(period: int = 3, wait_timeout: float = 3.0, max_latent_age: float = 10.0) -> PlanScheduler:
    return PlanScheduler(LatentSelector("lockstep", period, RATE, max_latent_age), wait_timeout=wait_timeout)


def texts(step) -> str:
    return " | ".join(notice.text for notice in step.notices)


def test_lockstep_waits_for_the_exact_latent_then_plans_with_the_pose_of_the_same_stamp():
    scheduler = lockstep()
    pose(scheduler, 0)
    cloud(scheduler, 0, now=10.0)
    waiting = scheduler.step(10.0, 0)
    assert waiting.plan is None and waiting.wait == pytest.approx(3.0)
    scheduler.on_latent(latent(0, 1))
    step = scheduler.step(10.4, 0)
    assert step.plan is not None and step.plan.latent.sequence == 1 and step.plan.stamp_ns == stamp(0)
    assert step.plan.position[0] == pytest.approx(0.1) and step.plan.gripper_open == 1.0
    assert "no finger joint states yet" in texts(step)
    assert scheduler.step(10.5, 0).plan is None  # nothing new to plan


def test_lockstep_goes_on_with_an_earlier_latent_after_the_wait_and_says_asy_is_not_exact():
    scheduler = lockstep(period=3, wait_timeout=1.0)
    scheduler.on_latent(latent(0, 1))
    pose(scheduler, 6)
    cloud(scheduler, 6, now=0.0)  # step 6 needs the latent of step 3, which never comes
    assert scheduler.step(0.0, 0).wait == pytest.approx(1.0)
    assert scheduler.step(0.5, 0).wait == pytest.approx(0.5)
    step = scheduler.step(1.0, 0)
    assert step.plan is not None and step.plan.latent.sequence == 1
    assert "not exact" in texts(step) and "after waiting 1.00 s" in texts(step)


def test_a_long_exact_wait_is_logged_and_a_short_one_is_not():
    scheduler = lockstep()
    pose(scheduler, 0)
    pose(scheduler, 1)
    cloud(scheduler, 0, now=0.0)
    scheduler.step(0.0, 0)
    scheduler.on_latent(latent(0, 1))
    assert "waited 0.80 s" in texts(scheduler.step(0.8, 0))
    scheduler.planned(stamp(0), published=True)
    cloud(scheduler, 1, now=1.0)
    assert "waited" not in texts(scheduler.step(1.0, 0))


def test_a_newer_cloud_while_waiting_means_the_bridge_went_on_so_that_one_is_planned():
    scheduler = lockstep(period=0)
    pose(scheduler, 4)
    pose(scheduler, 5)
    cloud(scheduler, 4, now=0.0)
    assert scheduler.step(0.0, 0).plan is None
    cloud(scheduler, 5, now=0.5)
    gave_up = scheduler.step(0.5, 0)
    assert "a newer cloud came after 0.50 s, planning that one" in texts(gave_up) and gave_up.plan is None
    scheduler.on_latent(latent(5, 7))
    step = scheduler.step(0.6, 0)
    assert step.plan is not None and step.plan.stamp_ns == stamp(5) and step.plan.latent.sequence == 7


def test_a_re_sent_observation_is_planned_again_only_when_its_first_plan_was_not_published():
    scheduler = lockstep(period=0)
    pose(scheduler, 2)
    scheduler.on_latent(latent(2, 3))
    cloud(scheduler, 2, now=0.0)
    first = scheduler.step(0.0, 0).plan
    scheduler.planned(first.stamp_ns, published=False)
    cloud(scheduler, 2, now=1.0)  # the bridge re-sends: no plan was published for it
    again = scheduler.step(1.0, 0).plan
    assert again is not None and again.stamp_ns == stamp(2)
    scheduler.planned(again.stamp_ns, published=True)
    cloud(scheduler, 2, now=2.0)
    assert scheduler.step(2.0, 0).plan is None


def test_without_the_pose_of_its_stamp_the_newest_pose_is_used_after_a_short_wait():
    scheduler = lockstep(period=0)
    pose(scheduler, 1, x=0.2)
    scheduler.on_latent(latent(3, 1))
    cloud(scheduler, 3, now=0.0)
    waiting = scheduler.step(0.0, 0)
    assert waiting.plan is None and waiting.wait == pytest.approx(0.2)
    step = scheduler.step(0.2, 0)
    assert step.plan.position[0] == pytest.approx(0.2) and "no ee_pose stamped 0.100 s" in texts(step)


def test_with_no_pose_at_all_nothing_is_planned_and_that_is_said_once():
    scheduler = lockstep(period=0, wait_timeout=0.5)
    scheduler.on_latent(latent(0, 1))
    cloud(scheduler, 0, now=0.0)
    assert scheduler.step(0.0, 0).wait == pytest.approx(0.5)
    step = scheduler.step(0.5, 0)
    assert step.plan is None and "no ee_pose received yet" in texts(step)
    cloud(scheduler, 1, now=1.0)
    scheduler.step(1.0, 0)
    assert "no ee_pose" not in texts(scheduler.step(1.5, 0))


def test_sim_time_going_back_forgets_the_previous_episode():
    scheduler = lockstep(period=0, wait_timeout=0.5)
    scheduler.on_latent(latent(0, 1, received=0.0))
    pose(scheduler, 9)
    cloud(scheduler, 9, now=1.0)
    notices = cloud(scheduler, 0, now=2.0)
    assert "sim time went back to 0.000 s (a reset): forgot 1 latent(s)" in notices[0].text
    assert scheduler.step(2.0, 0).plan is None  # step 0's old latent is gone: wait for the new one


def test_realtime_plans_the_newest_cloud_at_most_once_per_replan_period():
    scheduler = PlanScheduler(LatentSelector("realtime", 0, RATE, 2.0), replan_period=0.1)
    pose(scheduler, 0)
    scheduler.on_latent(latent(0, 1))
    cloud(scheduler, 0, now=0.0)
    assert scheduler.step(0.0, stamp(1)).plan is not None
    cloud(scheduler, 1, now=0.02)
    cloud(scheduler, 2, now=0.04)
    waiting = scheduler.step(0.05, stamp(2))
    assert waiting.plan is None and waiting.wait == pytest.approx(0.05)
    assert scheduler.step(0.1, stamp(3)).plan.stamp_ns == stamp(2)


def test_realtime_age_gate_stops_and_resumes_with_one_line_each():
    scheduler = PlanScheduler(LatentSelector("realtime", 0, RATE, max_latent_age=1.0))
    pose(scheduler, 0)
    scheduler.on_latent(latent(0, 1))
    cloud(scheduler, 0, now=0.0)
    stopped = scheduler.step(0.0, stamp(0) + 2_000_000_000)
    assert stopped.plan is None and "stopped moving the arm" in texts(stopped)
    cloud(scheduler, 1, now=0.1)
    assert texts(scheduler.step(0.1, stamp(0) + 2_100_000_000)) == ""
    scheduler.on_latent(latent(70, 2))
    cloud(scheduler, 2, now=0.2)
    resumed = scheduler.step(0.2, stamp(70))
    assert resumed.plan is not None and "moving the arm again" in texts(resumed)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="replan_period"):
        PlanScheduler(LatentSelector(), replan_period=-1.0)
    with pytest.raises(ValueError, match="wait_timeout"):
        PlanScheduler(LatentSelector(), wait_timeout=-1.0)


def test_finger_width_adds_the_named_fingers_and_names_what_is_wrong():
    from openhelix_ros.system1.core import finger_width

    fingers = ["panda_finger_joint1", "panda_finger_joint2"]
    names = ["panda_joint1", *fingers]
    assert finger_width(names, [0.3, 0.02, 0.03], fingers) == pytest.approx(0.05)
    assert finger_width(["panda_joint1"], [0.3], fingers) is None
    with pytest.raises(ValueError, match="3 names but 2 positions"):
        finger_width(names, [0.3, 0.02], fingers)
    with pytest.raises(ValueError, match="NaN or infinite"):
        finger_width(names, [0.3, float("nan"), 0.03], fingers)


def test_after_a_reset_a_cloud_with_the_last_planned_stamp_is_planned():
    # Planned step 0, then the world is reset back to step 0 (sim time goes back from step 1): the new
    # episode's step 0 has the same stamp as the plan already published, but it is a new observation.
    scheduler = lockstep(period=0)
    pose(scheduler, 0)
    scheduler.on_latent(latent(0, 1, received=0.0))
    cloud(scheduler, 0, now=0.0)
    first = scheduler.step(0.0, 0).plan
    scheduler.planned(first.stamp_ns, published=True)
    cloud(scheduler, 1, now=0.5)
    scheduler.step(0.5, 0)  # step 1 waits for its latent
    notices = cloud(scheduler, 0, now=1.0)  # the reset
    assert "a reset" in notices[0].text
    pose(scheduler, 0)
    scheduler.on_latent(latent(0, 2, received=1.1))
    step = scheduler.step(1.1, 0)
    assert step.plan is not None and step.plan.stamp_ns == stamp(0) and step.plan.latent.sequence == 2


def test_lockstep_plans_the_newest_cloud_of_a_stamp_it_waits_on():
    """The bridge's first scene at step 0 waits for a latent (no instruction yet); the evaluator then
    resets to another scene, also at step 0: the plan, when the latent comes, is made from the reset's
    cloud, not the first one."""
    scheduler = lockstep()
    pose(scheduler, 0)
    scheduler.on_points(stamp(0), np.zeros((5, 3), np.float32), np.zeros((5, 3), np.uint8), 10.0)
    assert scheduler.step(10.0, 0).plan is None  # waiting for the latent of step 0
    reset = np.full((7, 3), 0.2, np.float32)
    scheduler.on_points(stamp(0), reset, np.zeros((7, 3), np.uint8), 10.5)
    pose(scheduler, 0, x=0.3)  # the reset scene's pose replaces the first one
    assert scheduler.step(10.5, 0).plan is None
    scheduler.on_latent(latent(0, 1))
    step = scheduler.step(10.6, 0)
    assert step.plan is not None and step.plan.xyz.shape == (7, 3) and float(step.plan.xyz[0, 0]) == pytest.approx(0.2)
    assert step.plan.position[0] == pytest.approx(0.3)
