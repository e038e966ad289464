"""The recorder node, run as a real process over DDS (its core: tests/unit/recording/test_core.py).

Bags are read back with rosbags' Reader and a typestore built here from the .msg files, independently
of the recorder's own code path, and checked message by message for gaps.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.bags import read_bag
from support.processes import TESTS_DIR

ROOT = TESTS_DIR.parent


def numbers(topic: str, decoded: list) -> list:
    """The number each test message carries (see tests/peers/bag_publisher.py)."""
    if topic == "/rec/cloud":
        return [m.header.stamp.sec for m in decoded]
    if topic == "/rec/chatter":
        return [int(m.data.split()[1]) for m in decoded]
    return [int(m.sequence) for m in decoded]


RECORDER = Path(sys.executable).parent / "recorder"  # the console script


def rosidl_hash(type_name: str) -> str:
    package, _, name = type_name.split("/")
    description = json.loads((Path(sys.prefix) / "share" / package / "msg" / f"{name}.json").read_text())
    return next(h["hash_string"] for h in description["type_hashes"] if h["type_name"] == type_name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_stream_leaves_a_complete_bag(tmp_path, processes, sig):
    bag = tmp_path / "bag"
    # The latched latent is published before the recorder exists.
    latched = processes.peer("bag_publisher.py", "--count", "1", "latent", label="latched")
    recorder = processes.node("recorder", "topics:=[/rec/trajectory, /rec/cloud, /rec/chatter, rec/latent]",
                              f"output:={bag}")
    stream = processes.peer("bag_publisher.py", "--count", "2000", "--rate", "100", "--wait-subscribers",
                            "trajectory", "cloud", "chatter", label="stream")
    stream.wait_for_line("SENT 100", timeout=20)
    # The latched latent comes from another participant, whose discovery can take seconds.
    recorder.wait_for_line("recording /rec/latent", timeout=30)
    time.sleep(0.3)
    # Signalled as a user would, mid-stream (the publisher keeps going): it must close its bag and exit 0.
    assert recorder.stop(sig) == 0, recorder.output()
    stream.stop()
    latched.stop()

    output = recorder.output()
    assert "closed bag" in output, output
    recorded = read_bag(bag)
    assert set(recorded) == {"/rec/trajectory", "/rec/cloud", "/rec/chatter", "/rec/latent"}, output
    for topic in ("/rec/trajectory", "/rec/chatter"):  # reliable: no gaps, in order
        got = numbers(topic, recorded[topic])
        assert got == list(range(1, len(got) + 1)), f"{topic} has gaps: {got}"
        assert len(got) >= 50, f"{topic}: only {len(got)} messages recorded before the signal"
    clouds = numbers("/rec/cloud", recorded["/rec/cloud"])
    assert clouds == sorted(clouds) and len(clouds) >= 50  # best effort: in order
    for cloud in recorded["/rec/cloud"][:20]:  # the bytes survive: x = i, y = 0..499, packed rgb 7, 7, 7
        points = np.frombuffer(cloud.data, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
        assert len(points) == 500 and cloud.point_step == 16 and cloud.header.frame_id == "world"
        assert np.all(points["x"] == cloud.header.stamp.sec) and np.array_equal(points["y"], np.arange(500))
        assert np.all(points["rgb"] == 0x070707)
    assert numbers("/rec/latent", recorded["/rec/latent"]) == [1]  # transient local, got late
    assert list(recorded["/rec/latent"][0].latent) == [0.5] * 512

    # metadata.yaml agrees with the storage, in rosbag2's own layout.
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert (info["version"], info["storage_identifier"]) == (9, "mcap")
    assert info["relative_file_paths"] == ["bag.mcap"]
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    for topic, decoded in recorded.items():
        assert topics[topic]["message_count"] == len(decoded)
        metadata = topics[topic]["topic_metadata"]
        assert metadata["type_description_hash"] == rosidl_hash(metadata["type"])
    assert topics["/rec/cloud"]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "best_effort"
    assert info["message_count"] == sum(len(v) for v in recorded.values())


def test_record_latched_false_leaves_out_what_was_published_before(tmp_path, processes):
    """One bag per episode: a latched message from before the recorder started (the previous episode's
    instruction, in `openhelix collect`) is not recorded; what comes afterwards is."""
    bag = tmp_path / "bag"
    # The latched latent is published before the recorder exists.
    latched = processes.peer("bag_publisher.py", "--count", "1", "latent", label="latched")
    recorder = processes.node("recorder", "topics:=[/rec/latent, /rec/chatter]", f"output:={bag}",
                              "record_latched:=false")
    # a volatile subscription to the latched latent
    recorder.wait_for_line("recording /rec/latent (openhelix_msgs/msg/GoalLatent, reliable)", timeout=30)
    stream = processes.peer("bag_publisher.py", "--count", "20", "--wait-subscribers", "chatter", label="stream")
    stream.wait_for_line("DONE", timeout=60)
    time.sleep(1.0)  # reliable samples still in flight
    assert recorder.stop() == 0, recorder.output()
    stream.stop()
    latched.stop()
    recorded = read_bag(bag)
    assert "/rec/latent" not in recorded, recorded.get("/rec/latent")
    assert numbers("/rec/chatter", recorded["/rec/chatter"]) == list(range(1, 21))


def test_every_message_of_a_burst_is_recorded_and_bad_types_are_reported(tmp_path, processes):
    bag = tmp_path / "burst"
    recorder = processes.node("recorder", "topics:=[/rec/trajectory, /rec/chatter, /rec/feedback]",
                              f"output:={bag}", "discovery_period:=0.05")
    burst = processes.peer("bag_publisher.py", "--count", "300", "--wait-subscribers",
                           "trajectory", "chatter", "feedback", label="burst")
    burst.wait_for_line("DONE", timeout=20)
    recorder.wait_for_line("cannot record /rec/feedback", timeout=30)  # the bad-type log line
    time.sleep(1.0)  # reliable samples still in flight
    assert recorder.alive, "recorder died:\n" + recorder.output()
    assert recorder.stop() == 0, recorder.output()
    burst.stop()
    output = recorder.output()
    assert "cannot record /rec/feedback (openhelix_msgs/action/RunEvaluation_FeedbackMessage)" in output
    assert output.count("cannot record /rec/feedback") == 1  # said once, not every discovery period
    recorded = read_bag(bag)
    assert set(recorded) == {"/rec/trajectory", "/rec/chatter"}
    assert numbers("/rec/trajectory", recorded["/rec/trajectory"]) == list(range(1, 301))
    assert numbers("/rec/chatter", recorded["/rec/chatter"]) == list(range(1, 301))
    first = recorded["/rec/trajectory"][0]
    assert [p.position.z for p in first.poses] == [0.001] * 3 and first.header.frame_id == "world"


def test_missing_output_parent_is_logged_and_the_node_stays_up(tmp_path, processes):
    target = tmp_path / "no" / "such" / "dir" / "bag"
    recorder = processes.command([RECORDER, "--ros-args", "-p", "topics:=[/rec/chatter, 'bad topic!']",
                                  "-p", f"output:={target}"], label="recorder")
    recorder.wait_for_line("not recording", timeout=30)  # the error line
    time.sleep(0.5)
    assert recorder.alive, "recorder exited:\n" + recorder.output()
    assert recorder.stop(signal.SIGTERM, timeout=10) == 0
    output = recorder.output()
    assert f"parent directory {target.parent} does not exist" in output
    assert "not recording 'bad topic!': invalid topic name" in output
    assert not target.parent.exists()


def test_the_recorder_reports_its_bag_and_what_it_wrote_on_diagnostics(tmp_path, processes, peer):
    from diagnostic_msgs.msg import DiagnosticArray

    from openhelix_ros.common.node_utils import DIAGNOSTICS_QOS
    from openhelix_ros.common.processes import wait_for

    bag = tmp_path / "bag"
    reports: list[dict[str, str]] = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", lambda array: reports.extend(
        {pair.key: pair.value for pair in status.values} for status in array.status
        if status.name == "recorder: node"), DIAGNOSTICS_QOS)
    recorder = processes.node("recorder", "topics:=[/rec/chatter]", f"output:={bag}")
    stream = processes.peer("bag_publisher.py", "--count", "50", "--wait-subscribers", "chatter", label="stream")
    stream.wait_for_line("DONE", timeout=30)
    wait_for(peer, lambda: any(report.get("messages written") == "50" for report in reports), 30,
             "a report of the 50 messages written", [recorder])
    report = next(report for report in reports if report.get("messages written") == "50")
    assert report["bag"] == str(bag) and int(report["bytes written"]) > 50 * 10
    assert report["in /rec/chatter"].startswith("50 messages")
    assert recorder.stop(signal.SIGINT) == 0


def can_mount_a_small_tmpfs() -> str | None:
    """None when this machine lets a test mount a tmpfs of its own (a user and mount namespace), else why not."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else f"no user+mount namespace here: {probe.stderr.strip()}"


FULL_DISK = 3 * 1024 * 1024  # bytes: room for two complete 1 MiB chunks and part of a third


@pytest.mark.parametrize("limit", ["full tmpfs", "file size limit"])
def test_a_full_disk_stops_the_recording_loudly_and_keeps_every_complete_chunk(tmp_path, processes, limit):
    """A disk that fills while recording: the recorder says which bag, what failed and how to rescue it,
    writes nothing more (no bag with a hole in it), exits 1 so whatever started it notices, and every
    complete chunk is recovered. "full tmpfs" is a real ENOSPC from a 3 MiB tmpfs in a mount namespace of
    the test's own; "file size limit" is RLIMIT_FSIZE at the same size (EFBIG), which needs no privilege."""
    import shlex

    from openhelix_ros.recording.core import recover_bag

    keep = tmp_path / "kept"
    keep.mkdir()
    if limit == "full tmpfs":
        why_not = can_mount_a_small_tmpfs()
        if why_not:
            pytest.skip(why_not)
        disk = tmp_path / "disk"
        disk.mkdir()
        bag = disk / "bag"
        recorder = [str(RECORDER), "--ros-args", "-p", "topics:=[/rec/cloud, /rec/chatter]", "-p", f"output:={bag}"]
        # The tmpfs lives as long as its namespace: the bag is copied out before the namespace ends.
        script = (f"mount -t tmpfs -o size={FULL_DISK} tmpfs {disk} && {shlex.join(recorder)}; status=$?; "
                  f"cp -a {bag} {keep}/; exit $status")
        argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
        expected = "No space left on device"
    else:
        bag = tmp_path / "bag"
        setup = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({FULL_DISK},) * 2); "
                 "os.execv(sys.argv[1], sys.argv[1:])")
        argv = [sys.executable, "-c", setup, sys.executable, str(RECORDER), "--ros-args", "-p",
                "topics:=[/rec/cloud, /rec/chatter]", "-p", f"output:={bag}"]
        expected = "File too large"
    recorder = processes.command(argv, label="recorder", ready="recording /rec/chatter, /rec/cloud to", timeout=60)
    stream = processes.peer("bag_publisher.py", "--count", "3000", "--rate", "200", "--wait-subscribers",
                            "cloud", "chatter", label="stream")
    status = recorder.wait(timeout=90)  # about 7.5 kB a round: 3 MiB is full after some 400 rounds
    stream.stop()
    output = recorder.output()
    assert status == 1, output[-3000:]
    assert "cannot write a message of /rec/" in output and f"to bag {bag}: " in output, output[-3000:]
    assert expected in output and "Recording stopped" in output and "recover" in output, output[-3000:]
    assert "[FATAL] recorder stopped: cannot write" in output and "Traceback" not in output, output[-3000:]

    written = keep / "bag" if limit == "full tmpfs" else bag
    assert not (written / "metadata.yaml").exists()  # left as it was, never finished on the full disk
    recovered = recover_bag(written, tmp_path / "recovered")
    messages = read_bag(recovered.output)
    chatter = numbers("/rec/chatter", messages["/rec/chatter"])
    assert chatter == list(range(1, len(chatter) + 1)) and len(chatter) >= 100, chatter[-5:]
    clouds = numbers("/rec/cloud", messages["/rec/cloud"])
    assert clouds == sorted(set(clouds)) and len(clouds) >= 100
    print(f"{limit}: {len(clouds)} clouds and {len(chatter)} chatter messages recovered")


# ----- the ROS-free core ----------------------------------------------------------------------------

def test_bag_of_a_killed_recorder_is_recovered(tmp_path, processes):
    """SIGKILL leaves no metadata.yaml and no MCAP summary; recover_bag rescues every complete chunk."""
    from openhelix_ros.recording.core import recover_bag

    bag = tmp_path / "killed"
    recorder = processes.node("recorder", "topics:=[/rec/cloud, /rec/chatter]", f"output:={bag}")
    stream = processes.peer("bag_publisher.py", "--count", "3000", "--rate", "200", "--wait-subscribers",
                            "cloud", "chatter", label="stream")
    stream.wait_for_line("SENT 400", timeout=20)  # about 3 MB: a few complete 1 MiB chunks
    recorder.stop(signal.SIGKILL, timeout=10)
    stream.stop()
    assert not (bag / "metadata.yaml").exists()
    with pytest.raises(Exception):  # noqa: B017 - any reader error: the bag is unreadable as it is
        read_bag(bag)

    recovered = recover_bag(bag)
    assert recovered.output == tmp_path / "killed-recovered"
    messages = read_bag(recovered.output)
    chatter = numbers("/rec/chatter", messages["/rec/chatter"])
    assert chatter == list(range(1, len(chatter) + 1)) and len(chatter) >= 100, chatter[-5:]
    clouds = numbers("/rec/cloud", messages["/rec/cloud"])
    assert clouds == sorted(set(clouds)) and len(clouds) >= 100
    assert (recovered.output / "metadata.yaml").exists() and (bag / "killed.mcap").exists()  # original kept
