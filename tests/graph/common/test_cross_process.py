"""openhelix_msgs across real processes over real DDS: every message type, both services, the action."""

from __future__ import annotations

import json

import pytest
from support.processes import Processes
from support.samples import sample_message

from openhelix_ros.common.messages import message_to_dict

MESSAGE_TYPES = [
    "openhelix_msgs/msg/GoalLatent",
    "openhelix_msgs/msg/EETrajectory",
    "openhelix_msgs/msg/Instruction",
    "openhelix_msgs/msg/SceneState",
    "openhelix_msgs/msg/EvaluationProgress",
]
SEED = 7


@pytest.fixture(scope="module")
def received_messages(tmp_path_factory) -> dict:
    """One publisher process and one subscriber process exchange a sample of every type."""
    directory = tmp_path_factory.mktemp("roundtrip")
    out = directory / "received.json"
    with Processes(directory) as processes:
        processes.peer("topic_roundtrip.py", "publish", "--seed", str(SEED), *MESSAGE_TYPES, label="publisher")
        subscriber = processes.peer("topic_roundtrip.py", "subscribe", "--out", str(out), *MESSAGE_TYPES,
                                    label="subscriber", ready=None)
        assert subscriber.wait(timeout=60) == 0, f"subscriber failed:\n{subscriber.output()}"
    return json.loads(out.read_text())


@pytest.mark.parametrize("type_name", MESSAGE_TYPES)
def test_message_round_trips_between_processes(received_messages, type_name):
    expected = message_to_dict(sample_message(type_name, SEED))
    assert type_name in received_messages, f"{type_name} never arrived"
    got = received_messages[type_name]
    assert set(got) == set(expected)
    for field in expected:
        assert got[field] == pytest.approx(expected[field]) if isinstance(expected[field], float) \
            else got[field] == expected[field], f"{type_name}.{field} changed in transit"


def test_samples_fill_every_field_with_non_default_values():
    # The round trip only proves something if the sample differs from a default message everywhere.
    from openhelix_ros.common.messages import message_class
    for type_name in MESSAGE_TYPES:
        default = message_to_dict(message_class(type_name)())
        sample = message_to_dict(sample_message(type_name, SEED))
        unchanged = [field for field in default if default[field] == sample[field]]
        assert not unchanged, f"{type_name}: sample leaves {unchanged} at their defaults"


def test_services_across_processes(tmp_path, processes):
    processes.peer("scene_services.py", "serve", label="server")
    out = tmp_path / "responses.json"
    client = processes.peer("scene_services.py", "call", "--out", str(out), label="client", ready=None)
    assert client.wait(timeout=60) == 0, f"client failed:\n{client.output()}"
    responses = json.loads(out.read_text())

    assert responses["reset_default"]["success"] is True
    assert responses["reset_default"]["state"]["scene_obs"] == [3.0] * 24
    assert responses["reset_given"]["state"]["robot_obs"] == [0.5] * 15
    assert responses["reset_given"]["state"]["scene_obs"] == [0.25] * 24
    assert responses["reset_given"]["state"]["header"]["frame_id"] == "world"
    assert responses["reset_bad"]["success"] is False
    assert "robot_obs must have 15 values" in responses["reset_bad"]["message"]
    assert responses["check"]["success"] is True
    assert responses["check"]["completed"] == ["open_drawer"]
    assert responses["check"]["current_state"]["step"] == 42
    assert responses["check_unknown"]["success"] is False
    assert "fly_to_the_moon" in responses["check_unknown"]["message"]


def test_action_feedback_result_and_cancel_across_processes(tmp_path, processes):
    processes.peer("evaluation_action.py", "serve", label="server")
    out = tmp_path / "outcomes.json"
    client = processes.peer("evaluation_action.py", "client", "--out", str(out), label="client", ready=None)
    assert client.wait(timeout=90) == 0, f"client failed:\n{client.output()}"
    outcomes = json.loads(out.read_text())
    codes = outcomes["status_codes"]

    complete = outcomes["complete"]
    assert complete["status"] == codes["succeeded"]
    assert [f["progress"]["chain_index"] for f in complete["feedback"]] == [0, 1, 2, 3]
    assert all(f["progress"]["variant"] == "standard" for f in complete["feedback"])
    assert complete["feedback"][1]["chain_completed"] == 1
    # chains completed 0, 1, 2, 3 subtasks: 3/4 did at least one, 2/4 two, 1/4 three, none four.
    assert complete["result"]["success_rates"] == pytest.approx([0.75, 0.5, 0.25, 0.0, 0.0])
    assert complete["result"]["average_length"] == pytest.approx(1.5)
    assert complete["result"]["num_sequences_done"] == 4
    assert complete["result"]["results_path"] == "runs/roundtrip"

    cancelled = outcomes["cancelled"]
    assert cancelled["goals_canceling"] == 1
    assert cancelled["status"] == codes["canceled"]
    assert 2 <= cancelled["result"]["num_sequences_done"] < 200
    assert len(cancelled["feedback"]) >= 2

    assert outcomes["rejected"] == {"accepted": False}
