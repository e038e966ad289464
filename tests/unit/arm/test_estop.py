"""EstopMonitor: the estop as a level, and the holds for a stop that can no longer be heard."""

from __future__ import annotations

import pytest

from openhelix_ros.arm.estop import EstopMonitor


def test_the_newest_message_is_the_state_and_only_changes_are_flagged():
    monitor = EstopMonitor(watch="off")
    assert monitor.decide(0.0, publishers=0) == (False, "", False)
    monitor.on_message(True, 0.1)
    first = monitor.decide(0.1, publishers=1)
    assert first.hold and first.reason == "ESTOP pressed" and first.changed
    monitor.on_message(True, 0.2)  # repeated: still held, nothing new to say
    assert monitor.decide(0.2, publishers=1) == (True, "ESTOP pressed", False)
    monitor.on_message(False, 0.3)
    assert monitor.decide(0.3, publishers=1) == (False, "", True)


def test_lost_holds_when_the_last_publisher_goes_until_one_says_released():
    monitor = EstopMonitor(watch="lost")
    assert not monitor.decide(0.0, publishers=0).hold  # none ever: the arm is not held for it
    monitor.on_message(False, 0.1)
    assert not monitor.decide(0.1, publishers=1).hold
    lost = monitor.decide(0.2, publishers=0)
    assert lost.hold and lost.changed and "went away" in lost.reason
    back = monitor.decide(0.3, publishers=1)  # matched again, its latched state not delivered yet
    assert back.hold and "has not said released" in back.reason
    monitor.on_message(False, 0.4)
    assert monitor.decide(0.4, publishers=1) == (False, "", True)


def test_a_pressed_stop_stays_pressed_when_its_publisher_goes():
    monitor = EstopMonitor(watch="lost")
    monitor.on_message(True, 0.0)
    assert monitor.decide(0.0, publishers=1).reason == "ESTOP pressed"
    assert monitor.decide(1.0, publishers=0).reason == "ESTOP pressed"


def test_required_holds_from_the_start_until_a_publisher_says_released():
    monitor = EstopMonitor(watch="required")
    assert "no estop publisher" in monitor.decide(0.0, publishers=0).reason
    assert "has not said released" in monitor.decide(0.1, publishers=1).reason
    monitor.on_message(False, 0.2)
    assert not monitor.decide(0.2, publishers=1).hold
    assert "no estop publisher" in monitor.decide(0.3, publishers=0).reason


def test_a_heartbeat_that_stops_holds_the_arm_after_the_timeout():
    monitor = EstopMonitor(watch="off", timeout=0.5)
    monitor.on_message(False, 0.0)
    assert not monitor.decide(0.4, publishers=1).hold
    late = monitor.decide(0.6, publishers=1)  # the publisher's process hangs or was killed -9
    assert late.hold and late.changed and late.reason == "no estop message for 0.60 s (estop_timeout 0.5 s)"
    assert not monitor.decide(0.9, publishers=1).changed  # the age grows, the cause is the same
    monitor.on_message(False, 1.0)
    assert monitor.decide(1.0, publishers=1) == (False, "", True)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="estop_watch must be one of off, lost, required"):
        EstopMonitor(watch="sometimes")
    with pytest.raises(ValueError, match="estop_timeout must be >= 0"):
        EstopMonitor(timeout=-1)
