"""The in-process graph's parameters and loop without any ROS process (its equality with the real graph
is tests/graph/evaluation/test_inprocess.py)."""

from __future__ import annotations

import pytest

from openhelix_ros.common.graphs import EVAL
from openhelix_ros.evaluation.core import EvaluationConfig
from openhelix_ros.evaluation.inprocess import ExpertPolicy, InProcessGraph, node_parameters
from openhelix_ros.system1.parameters import PARAMETERS as SYSTEM1


def test_node_parameters_are_defaults_then_files_then_the_graphs_arguments(tmp_path):
    (tmp_path / "graph.yaml").write_text("/**:\n  ros__parameters:\n    control_rate: 15.0\n    latent_period_steps: 4\n")
    (tmp_path / "system1.yaml").write_text("/**:\n  ros__parameters:\n    model: default\n    seed: 7\n    unknown: 1\n")
    [system1] = [node for node in EVAL.resolve({"latent_period_steps": "6"}) if node.name == "system1"]
    values = node_parameters(system1, SYSTEM1, tmp_path)
    assert values["control_rate"] == 15.0  # graph.yaml
    assert values["seed"] == 7 and "unknown" not in values  # system1.yaml, only what the node declares
    assert values["latent_period_steps"] == 6  # the launch argument wins over the files
    assert values["max_latent_age"] == 2.0  # the spec's default where nothing says otherwise


def test_the_expert_graph_in_process_completes_a_chain_with_one_plan_per_step():
    graph, evaluator = InProcessGraph.from_graph({"policy": "expert"}, extra={"calvin_bridge": {"render": False}})
    try:
        assert isinstance(graph.policy, ExpertPolicy) and evaluator["runs_dir"]
        chains = []
        run = graph.evaluate(EvaluationConfig(num_sequences=1, seed=0), on_chain=chains.append)
    finally:
        graph.bridge.close()
    assert run.status == "completed" and [record.completed for record in chains] == [5]
    assert graph.stats.plans == graph.stats.steps == sum(s.steps for s in run.records[0].subtasks)
    assert graph.bridge.protocol == "calvin"  # set back after the goal
    assert all(s.end_tcp is not None and len(s.end_tcp) == 3 for s in run.records[0].subtasks)


def test_the_in_process_graph_refuses_realtime():
    from openhelix_ros.bridge.core import BridgeConfig, BridgeCore

    bridge = BridgeCore(BridgeConfig(render=False, clock_mode="realtime"))
    try:
        with pytest.raises(ValueError, match="lockstep only"):
            InProcessGraph(bridge, policy=None)
    finally:
        bridge.close()
