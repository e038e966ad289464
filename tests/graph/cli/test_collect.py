"""`openhelix collect` end to end (the real CLI starting the bridge, the expert and a recorder as separate
processes), its episode planning, and process helpers it shares with other verbs."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from support.bags import independent_typestore
from support.processes import TESTS_DIR

from openhelix_ros.cli.collect import plan_episodes
from openhelix_ros.common.processes import format_parameter, node_command

ROOT = TESTS_DIR.parent
OPENHELIX = Path(sys.executable).parent / "openhelix"


def recorded_each_step_in_order(steps: list[int]) -> bool:
    """No step lost and none out of order. A step may be there twice in a row: the lockstep bridge
    re-sends an observation it got no plan for (every resend_after s), and the recorder keeps what was
    published; the bag reader takes it as one frame."""
    distinct = [step for i, step in enumerate(steps) if i == 0 or step != steps[i - 1]]
    return bool(distinct) and distinct == list(range(distinct[0], distinct[0] + len(distinct)))


def test_plan_episodes_is_deterministic_and_checks_tasks():
    chains = plan_episodes(4, seed=1, subtasks=2)
    assert [e.tasks for e in chains] == [e.tasks for e in plan_episodes(4, seed=1, subtasks=2)]
    assert all(len(e.tasks) == 2 and len(e.robot_obs) == 15 and len(e.scene_obs) == 24 for e in chains)
    listed = plan_episodes(3, seed=0, tasks=["open_drawer", "turn_on_led"])
    assert [e.tasks for e in listed] == [["open_drawer"], ["turn_on_led"], ["open_drawer"]]
    # The drawer must start closed for open_drawer to be asked for.
    assert all(e.condition.get("drawer", "closed") == "closed" for e in listed if e.tasks == ["open_drawer"])
    with pytest.raises(ValueError, match="need a block in the hand"):
        plan_episodes(1, tasks=["place_in_drawer"])
    with pytest.raises(ValueError, match="unknown task"):
        plan_episodes(1, tasks=["open_everything"])
    with pytest.raises(ValueError, match="--subtasks"):
        plan_episodes(1, subtasks=6)


def test_parameter_formatting_for_ros_args():
    assert format_parameter("dynamic", "") == "dynamic:=\"\""
    assert format_parameter("backend", "embedded") == "backend:=embedded"
    assert format_parameter("label", "true") == "label:=\"true\""  # a string, not a bool
    assert format_parameter("render", False) == "render:=false"
    assert format_parameter("rate", 30) == "rate:=30" and format_parameter("rate", 30.0) == "rate:=30.0"
    assert format_parameter("low", [-0.6, 0.0, 1]) == "low:=[-0.6, 0.0, 1]"
    command = node_command("calvin_bridge", {"seed": 3}, name="bridge", remaps={"points": "cloud"})
    assert command[1:5] == ["-m", "openhelix_ros.bridge.node", "--ros-args", "-r"]
    assert "seed:=3" in command and "points:=cloud" in command and "__node:=bridge" in command


def test_collect_records_a_demonstration_the_training_data_can_use(tmp_path):
    result = subprocess.run([str(OPENHELIX), "collect", "--name", "demo", "--episodes", "2", "--tasks",
                             "turn_on_led,turn_off_led", "--videos", "1", "--runs-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 episodes recorded" in result.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["successful_episodes"] == 2 and summary["episodes"][0]["tasks"] == ["turn_on_led"]
    steps = summary["episodes"][0]["steps"][0]
    assert 0 < steps < 360
    bag = Path(summary["bags"][0])
    assert bag.parent == tmp_path / "demo" / "bags" and (bag / "metadata.yaml").exists()

    # Read back independently: every step's scene state, with its cloud, after the instruction.
    store = independent_typestore()
    order: list[tuple[str, object]] = []
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            order.append((connection.topic, store.deserialize_cdr(raw, connection.msgtype)))
    topics = {topic for topic, _ in order}
    assert {"/scene_state", "/points", "/instruction", "/ee_trajectory", "/camera/static/image_raw"} <= topics
    instruction_at = next(i for i, (topic, _) in enumerate(order) if topic == "/instruction")
    assert order[instruction_at][1].task == "turn_on_led" and order[instruction_at][1].text
    states = [m for topic, m in order[instruction_at:] if topic == "/scene_state"]
    assert len(states) >= steps
    assert recorded_each_step_in_order([s.step for s in states])
    cloud_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for t, m in order if t == "/points"}
    assert all((s.header.stamp.sec, s.header.stamp.nanosec) in cloud_stamps for s in states)
    # The LED went on during the demonstration.
    assert states[0].scene_obs[5] == 0.0 and states[-1].scene_obs[5] == 1.0
    # Each bag holds its own episode's instruction only (none latched over from the previous episode).
    assert [m.task for topic, m in order if topic == "/instruction"] == ["turn_on_led"]
    with Reader(Path(summary["bags"][1])) as reader:
        second = [store.deserialize_cdr(raw, c.msgtype).task for c, _, raw in reader.messages()
                  if c.topic == "/instruction"]
    assert second == ["turn_off_led"]
    assert {"/camera/static/pose", "/camera/gripper/pose"} <= topics  # the extrinsics, for the video too

    # --videos 1: the first bag is filmed (one frame per recorded step, then the held outcome), not the second.
    import imageio_ffmpeg

    from openhelix_ros.evaluation.video import BAR, ChainFilm

    assert len(summary["videos"]) == 1 and summary["videos"][0]["error"] == ""
    video = Path(summary["videos"][0]["path"])
    assert video == tmp_path / "demo" / "videos" / "episode_0000.mp4" and f"video {video}" in result.stdout
    # Every distinct static image of the bag (the reset's, before the instruction, too) is one frame.
    distinct_steps = len({(m.header.stamp.sec, m.header.stamp.nanosec) for t, m in order
                          if t == "/camera/static/image_raw"})
    assert distinct_steps >= len({s.step for s in states})
    assert summary["videos"][0]["frames"] == distinct_steps + ChainFilm.HOLD_FRAMES
    reader = imageio_ffmpeg.read_frames(str(video))
    width, height = next(reader)["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    assert len(frames) == summary["videos"][0]["frames"]
    # The expert's plan is drawn into the image through the recorded camera pose: green (open) or red
    # (closed) marks that the camera image itself does not have. Frame 0 has no plan yet.
    def marked(frame):
        image = frame[BAR:height - BAR].astype(int)
        green = (image[..., 1] > 170) & (image[..., 0] < 90) & (image[..., 2] < 110)
        red = (image[..., 0] > 190) & (image[..., 1] < 70) & (image[..., 2] < 70)
        return int(green.sum() + red.sum())
    assert max(marked(frame) for frame in frames[5:distinct_steps]) > 20 + marked(frames[0])
    # The subtask's mark, bottom left, is grey while the episode runs and green (done) in the held frames.
    def green_mark(frame):
        corner = frame[height - BAR - 16:, :30].astype(int)
        return int(((corner[..., 1] > 160) & (corner[..., 0] < 90) & (corner[..., 2] < 110)).sum())
    assert green_mark(frames[0]) < 20 and green_mark(frames[-1]) > 100
    assert not (tmp_path / "demo" / "videos" / "episode_0001.mp4").exists()


def test_collect_refuses_bad_arguments_with_one_line(tmp_path):
    result = subprocess.run([str(OPENHELIX), "collect", "--tasks", "place_in_slider", "--runs-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "need a block in the hand" in result.stderr
    assert not (tmp_path / "collect").exists()


def test_collect_with_keyboard_teleop_records_what_the_keys_did(tmp_path, processes):
    """A person at a terminal (a pseudo-terminal here): keys drive the arm through the teleop node, Enter
    gives up on an episode (kept with --keep-failed) and q stops collecting."""
    master, slave = pty.openpty()
    collect = processes.command([OPENHELIX, "collect", "--teleop", "keyboard", "--name", "teleop", "--episodes",
                                 "2", "--tasks", "turn_on_led", "--no-render", "--keep-failed", "--runs-dir",
                                 tmp_path], label="openhelix-collect", stdin=slave)
    os.close(slave)

    def type_keys(keys: str, times: int = 1, every: float = 0.05) -> None:
        for _ in range(times):
            os.write(master, keys.encode())
            time.sleep(every)

    try:
        collect.wait_for_line("episode 1/2: ", timeout=90)
        type_keys("d", times=40)  # held: the terminal's auto-repeat, about 20 presses a second
        type_keys(" ")  # close the gripper
        time.sleep(1.0)
        type_keys("\r")  # give up on this episode
        collect.wait_for_line("episode 2/2: ", timeout=90)
        type_keys("q")
        assert collect.wait(timeout=60) == 0, collect.output()
    finally:
        os.close(master)
    output = collect.output()
    assert "the operator ended the episode" in output and "stopped by the operator" in output
    summary = json.loads((tmp_path / "teleop" / "summary.json").read_text())
    assert summary["successful_episodes"] == 0 and len(summary["episodes"]) == 2
    bag = Path(summary["episodes"][0]["bag"])
    assert bag.parent == tmp_path / "teleop" / "bags" / "failed"

    store = independent_typestore()
    states, trajectories = [], []
    with Reader(bag) as reader_:
        for connection, _, raw in reader_.messages():
            message = store.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == "/scene_state":
                states.append(message)
            elif connection.topic == "/ee_trajectory":
                trajectories.append(message)
    assert states and trajectories
    moved = np.asarray(states[-1].robot_obs[:3]) - np.asarray(states[0].robot_obs[:3])
    assert moved[0] > 0.05 and abs(moved[1]) < 0.02 and abs(moved[2]) < 0.02, moved  # "d" is +x
    assert states[0].robot_obs[14] > 0 and states[-1].robot_obs[14] < 0  # space closed the gripper
    assert recorded_each_step_in_order([s.step for s in states])
