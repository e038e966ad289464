"""The system2 node as a real process (tiny model) fed by another process over DDS: latents of the right
size stamped with their image, bad input logged and dropped with the node alive, and the lockstep
Asy(N) schedule (only steps 0, N, 2N, ... encoded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.processes import Processes, drive

STEP_NS = 1_000_000_000 / 30


def run_scenario(processes: Processes, directory, node_params: list[str], driver_args: list[str]):
    config = Path(__file__).resolve().parents[3] / "config" / "system2.yaml"
    node = processes.node("openhelix_ros.system2.node", "model:=tiny", "torch_threads:=1", *node_params,
                          params_files=[config])
    out = directory / "received.json"
    driver = processes.peer("system2_driver.py", "--out", str(out), *driver_args, ready=None)
    text = drive(node, driver, 120, "system2")
    return json.loads(out.read_text()), text


@pytest.fixture(scope="module")
def realtime(tmp_path_factory):
    directory = tmp_path_factory.mktemp("system2-realtime")
    with Processes(directory) as processes:
        return run_scenario(processes, directory, ["clock_mode:=realtime"], ["--mode", "realtime"])


def test_latent_of_the_right_size_carries_the_image_stamp(realtime):
    data, _ = realtime
    by_stamp = {r["observation_stamp"]: r for r in data["received"]}
    for stamp in data["expected"]:
        latent = by_stamp[stamp]  # observation_stamp = the image's header.stamp, to the nanosecond
        assert latent["size"] == 32 and latent["finite"]
        assert latent["instruction"] == "open the drawer" and latent["model_id"] == "tiny"
        assert 0 < latent["inference_time"] < 30
    sequences = [r["sequence"] for r in data["received"]]
    assert sequences == list(range(1, len(sequences) + 1))
    # Each image is encoded once (an unchanged image and instruction give nothing new).
    assert len(data["received"]) == len(data["expected"])


def test_bad_input_is_logged_and_dropped_while_the_node_stays_alive(realtime):
    data, log = realtime
    assert "instruction 1 dropped: instruction is empty" in log
    assert "instruction 1 dropped: instruction has 100000 characters, more than the limit of 1000" in log
    assert "tokens long, more than max_instruction_tokens=128; not encoded" in log
    assert "image dropped: encoding 'mono8' is not colour" in log
    assert "image dropped: image data has 100 bytes" in log
    # The bad images produced no latent; the good ones after them did (the node kept working).
    assert {r["observation_stamp"] for r in data["received"]} == set(data["expected"])


def test_lockstep_encodes_the_steps_of_asy_n_only(tmp_path, processes):
    data, log = run_scenario(processes, tmp_path, ["clock_mode:=lockstep", "latent_period_steps:=3"],
                             ["--mode", "lockstep", "--period", "3", "--steps", "8"])
    steps = [round(r["observation_stamp"] / STEP_NS) for r in data["received"]]
    assert steps == [0, 3, 6]
    assert "lockstep, images of steps divisible by 3" in log
    assert all(r["instruction"] == "lift the blue block" for r in data["received"])
