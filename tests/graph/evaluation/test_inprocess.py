"""The in-process graph (evaluation/inprocess.py) against the real one: the same nodes' parameters,
the same goal, the same seeds give the same episodes to the env step and the same final arm positions
(bit for bit: the physics, the policies and the conversions are the same code on the same inputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from openhelix_ros.bridge.core import BridgeConfig, BridgeCore
from openhelix_ros.bridge.parameters import PARAMETERS as BRIDGE
from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.evaluation.core import EvaluationConfig
from openhelix_ros.evaluation.inprocess import DualPolicy, ExpertPolicy, InProcessGraph
from openhelix_ros.expert.parameters import PARAMETERS as EXPERT
from openhelix_ros.system1.parameters import PARAMETERS as SYSTEM1
from openhelix_ros.system2.parameters import PARAMETERS as SYSTEM2

pytest.importorskip("rclpy")


def parameters(specs: tuple[ParameterSpec, ...], assignments: list[str]) -> dict:
    """A node's values for ``name:=value`` assignments over its defaults, as ``-p`` gives them."""
    import yaml

    values = {spec.name: spec.default for spec in specs}
    for assignment in assignments:
        name, value = assignment.split(":=", 1)
        values[name] = yaml.safe_load(value)
    return values


def evaluate_through_the_graph(processes, namespace: str, runs, nodes: dict[str, list[str]], goal: list[str]) -> dict:
    """Start ``nodes`` (name -> assignments) and an evaluator in ``namespace``, run ``openhelix eval``
    with ``goal``, return the results.json."""
    for name, assignments in nodes.items():
        processes.node(name, *assignments, namespace=namespace)
    processes.node("evaluator", f"runs_dir:={runs}", "service_timeout:=30.0", namespace=namespace,
                   ready="ready:", timeout=30.0)
    done = subprocess.run([sys.executable, "-m", "openhelix_ros.cli", "eval", "--namespace", namespace,
                           "--run-name", "graph", *goal], capture_output=True, text=True, timeout=400,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((runs / "graph" / "results.json").read_text())


def episodes(chains) -> list[list[tuple]]:
    """(task, success, steps, policy calls, end TCP) of every subtask, chain by chain."""
    return [[(s["task"], s["success"], s["steps"], s["policy_calls"], s["end_tcp"]) for s in chain["subtasks"]]
            for chain in chains]


def first_difference(ours, theirs) -> str:
    for c, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return f"chain {c} subtask {i}: in process {x}, graph {y}"
    return f"{len(ours)} vs {len(theirs)} chains"


def test_the_expert_in_process_equals_the_graph(tmp_path, processes):
    """Single-task episodes of three tasks the expert completes: every one ends at the same env step with
    the arm at the same place, in process and through DDS.

    Within a chain the two may differ by a few steps at a subtask boundary: the expert node answers the
    state that completed a subtask before the next instruction reaches it, and whether the bridge takes
    that answer or the one made after the instruction is a race in the graph (the in-process graph always
    has the instruction first). Chains are therefore compared by what they completed."""
    bridge = ["render:=false", "clock_mode:=lockstep"]
    nodes = {"calvin_bridge": bridge, "scripted_expert": []}
    tasks = ("open_drawer", "turn_on_led", "move_slider_left")
    graph = evaluate_through_the_graph(processes, "/inprocess_expert", tmp_path / "runs", nodes,
                                       ["-n", "3", "--seed", "5", "--tasks", ",".join(tasks)])
    local = InProcessGraph(BridgeCore(BridgeConfig.from_parameters(parameters(BRIDGE, bridge))),
                           ExpertPolicy(parameters(EXPERT, [])))
    try:
        run = local.evaluate(EvaluationConfig(num_sequences=3, seed=5, tasks=tasks))
        ours = episodes([record.to_dict() for record in run.records])
        assert [chain[0][0] for chain in ours] == list(tasks) and all(chain[0][1] for chain in ours)
        assert ours == episodes(graph["chains"]), first_difference(ours, episodes(graph["chains"]))
        assert local.stats.holds == 0 and local.stats.plans == local.stats.steps
        chain = local.evaluate(EvaluationConfig(num_sequences=1, seed=0))
    finally:
        local.bridge.close()
    chains = evaluate_through_the_graph(processes, "/inprocess_expert_chain", tmp_path / "chain_runs", nodes,
                                        ["-n", "1", "--seed", "0"])
    assert [s.success for s in chain.records[0].subtasks] == [s["success"] for s in chains["chains"][0]["subtasks"]]
    assert chain.records[0].completed == 5


@pytest.mark.slow  # the rendered simulator and both systems as processes: about a minute here
def test_the_dual_system_in_process_equals_the_graph(tmp_path, processes):
    """System 2 and System 1 (tiny, Asy(3)) on the rendered play table, single-task episodes of two
    tasks, 12 steps each: the latents, the clouds, the plans and so the arm end the same way in process.
    The second episode's first latent must come from its own instruction, not the first's (System 2
    waits for the instruction that follows a reset), or its arm would end elsewhere."""
    shared = ["clock_mode:=lockstep", "latent_period_steps:=3"]
    system = [*shared, "model:=tiny", "torch_threads:=1", "num_inference_steps:=2"]
    bridge = ["backend:=embedded", "clock_mode:=lockstep"]
    goal = ["-n", "2", "--seed", "3", "--tasks", "open_drawer,close_drawer", "--episode-length", "12"]
    graph = evaluate_through_the_graph(processes, "/inprocess_dual", tmp_path / "runs",
                                       {"system2": system, "system1": system, "calvin_bridge": bridge}, goal)
    policy = DualPolicy(parameters(SYSTEM2, system), parameters(SYSTEM1, system))
    local = InProcessGraph(BridgeCore(BridgeConfig.from_parameters(parameters(BRIDGE, bridge))), policy)
    try:
        run = local.evaluate(EvaluationConfig(num_sequences=2, seed=3, tasks=("open_drawer", "close_drawer"),
                                              episode_length=12))
    finally:
        local.bridge.close()
    ours = episodes([record.to_dict() for record in run.records])
    assert [[(task, steps) for task, _, steps, _, _ in chain] for chain in ours] == [[("open_drawer", 12)],
                                                                                     [("close_drawer", 12)]]
    assert ours == episodes(graph["chains"]), first_difference(ours, episodes(graph["chains"]))
    # One plan per step and a latent for steps 0, 3, 6, 9, 12 of each episode.
    assert local.stats.holds == 0 and local.stats.plans == local.stats.steps == 24
    assert policy.latents == 10


@pytest.mark.slow  # the rendered simulator and both systems as processes
def test_a_camera_policy_in_process_equals_the_graph(tmp_path, processes):
    """A release-format 3D Diffuser Actor miniature (it reads each camera's organised cloud, paired by stamp)
    beside the tiny System 2: the same episode in process as through DDS, to the final arm position."""
    from support.release import imported_policy

    from openhelix_training import System2

    checkpoint = tmp_path / "checkpoint"
    imported_policy(tmp_path, checkpoint / "system1", 32)
    System2.from_config("tiny").save_pretrained(checkpoint / "system2")
    system = ["clock_mode:=lockstep", "latent_period_steps:=3", f"checkpoint:={checkpoint}", "torch_threads:=1"]
    bridge = ["backend:=embedded", "clock_mode:=lockstep"]
    goal = ["-n", "1", "--seed", "4", "--tasks", "open_drawer", "--episode-length", "8"]
    graph = evaluate_through_the_graph(processes, "/inprocess_camera", tmp_path / "runs",
                                       {"system2": system, "system1": system, "calvin_bridge": bridge}, goal)
    policy = DualPolicy(parameters(SYSTEM2, system), parameters(SYSTEM1, system))
    assert policy.frames is not None and policy.frames.cameras == ("static", "gripper")
    local = InProcessGraph(BridgeCore(BridgeConfig.from_parameters(parameters(BRIDGE, bridge))), policy)
    try:
        run = local.evaluate(EvaluationConfig(num_sequences=1, seed=4, tasks=("open_drawer",), episode_length=8))
    finally:
        local.bridge.close()
    ours = episodes([record.to_dict() for record in run.records])
    assert [[(task, steps) for task, _, steps, _, _ in chain] for chain in ours] == [[("open_drawer", 8)]]
    assert ours == episodes(graph["chains"]), first_difference(ours, episodes(graph["chains"]))
    assert local.stats.holds == 0 and local.stats.plans == local.stats.steps == 8
