"""The reliability issue's check: an outside process (tests/peers/fuzzer.py) publishes randomised malformed
messages of every type the sim graph subscribes (huge, empty, NaN/inf, wrong frames, mismatched lengths,
far-future stamps, invalid UTF-8, a 100,000-character instruction) at the running graph; afterwards every
node is alive, none logged a traceback, and a valid instruction leads to its latents and to plans made
with them within seconds."""

from __future__ import annotations

import time

import pytest
from support.graphs import OPENHELIX, GraphCommand, say

from openhelix_msgs.msg import EETrajectory, GoalLatent
from openhelix_ros.common import graph
from openhelix_ros.common.node_utils import LATENT_SUBSCRIBER_QOS, TRAJECTORY_QOS
from openhelix_ros.common.processes import topic_has_publishers

# What the sim graph with point-cloud System 1 subscribes (camera/static/points only a camera policy does).
FUZZED = (graph.POINTS, graph.STATIC_IMAGE, graph.INSTRUCTION, graph.GOAL_LATENT, graph.EE_TRAJECTORY,
          graph.JOINT_STATES, graph.EE_POSE)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_malformed_messages_of_every_type_leave_the_graph_alive_and_planning(peer, tmp_path, processes):
    trajectories: list[tuple[float, EETrajectory]] = []
    latents: list[tuple[float, GoalLatent]] = []
    peer.create_subscription(EETrajectory, graph.EE_TRAJECTORY, lambda m: trajectories.append((time.monotonic(), m)),
                             TRAJECTORY_QOS)
    peer.create_subscription(GoalLatent, graph.GOAL_LATENT, lambda m: latents.append((time.monotonic(), m)),
                             LATENT_SUBSCRIBER_QOS)
    logs = tmp_path / "logs"
    up = processes.command([OPENHELIX, "up", "sim", "system2_model:=tiny", "system1_model:=tiny",
                            "clock_mode:=realtime", "backend:=embedded", "--log-dir", str(logs)],
                           label="up", kind=GraphCommand)

    def plans_with(instruction: str, since: float) -> bool:
        mine = {m.sequence for at, m in latents if at >= since and m.instruction == instruction}
        return sum(1 for at, m in trajectories if at >= since and m.latent_sequence in mine) >= 3

    up.wait_for(peer, lambda: all(topic_has_publishers(peer, t) for t in (graph.EE_TRAJECTORY, graph.GOAL_LATENT)),
                300, "System 1 and System 2 to load")
    said = time.monotonic()
    assert say("open the drawer", "open_drawer").returncode == 0
    up.wait_for(peer, lambda: plans_with("open the drawer", said), 90, "plans before the fuzzing")

    fuzzer = processes.peer("fuzzer.py", "--rounds", "3", "--seed", "13", "--latent-dim", "32", "--topics", *FUZZED,
                            timeout=90)
    assert "no subscriber on: none" in fuzzer.output(), fuzzer.output()
    deadline = time.monotonic() + 300
    up.wait_for(peer, lambda: not fuzzer.alive or time.monotonic() > deadline, 310, "the fuzzer to finish")
    assert fuzzer.returncode == 0 and "DONE" in fuzzer.output(), fuzzer.output()[-3000:]
    sent = int(fuzzer.output().split("DONE ")[1].split()[0])
    assert sent >= 3 * 50

    # Every node alive (openhelix up exits as soon as one of them does), and the graph still plans.
    assert up.alive, up.output()[-4000:]
    said = time.monotonic()
    assert say("close the drawer", "close_drawer").returncode == 0
    up.wait_for(peer, lambda: plans_with("close the drawer", said), 60, "plans for an instruction after the fuzzing")
    print(f"after {sent} malformed messages: plans for the new instruction "
          f"{min(at for at, m in trajectories if at >= said) - said:.2f} s after it")

    for node in ("calvin_bridge", "system1", "system2"):
        text = (logs / f"{node}.log").read_text()
        assert "Traceback" not in text, f"{node} logged a traceback:\n{text[-4000:]}"
    # The bad input was refused, each with what was wrong and its limit where it has one.
    system1, system2 = (logs / "system1.log").read_text(), (logs / "system2.log").read_text()
    bridge = (logs / "calvin_bridge.log").read_text()
    assert "points dropped: PointCloud2 of 100000x100000 has 10000000000 points, more than the limit" in system1
    assert "goal_latent" in system1 and "dropped" in system1
    assert "instruction has 100000 characters, more than the limit of 1000" in system2
    assert "image dropped" in system2
    assert "instruction is not valid UTF-8" in system2  # rclpy hands it on with U+FFFD; System 2 refuses it
    # The bridge reads ee_trajectory keep-last 1 (only the newest plan counts), so in the fuzzer's burst any
    # one case may be replaced before it is read (the 20,000-pose one was, once, in CI): some refusal is
    # logged, and the one of the pose bound names its limit when it came through.
    assert "dropped ee_trajectory" in bridge
    if "20000 poses" in bridge:
        assert "trajectory has 20000 poses, more than the limit of 10000" in bridge
