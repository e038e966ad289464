"""The graph declarations (openhelix_ros/common/graphs.py) resolve launch arguments as ros2 launch would."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import openhelix_ros
from openhelix_ros.common.graphs import EVAL, RECORD, SIM, get_graph, parameter_file_values, parse_assignments


def by_name(nodes):
    return {node.name: node for node in nodes}


def test_defaults_start_the_dual_system_with_the_files_in_order():
    nodes = by_name(SIM.resolve())
    assert list(nodes) == ["calvin_bridge", "system2", "system1"]
    assert nodes["system1"].parameter_files == ("graph.yaml", "system1.yaml")
    box = {"workspace_low": [-0.6, -0.6, -0.16], "workspace_high": [0.6, 0.36, 0.65]}  # the play table's
    assert nodes["system1"].overrides == {"clock_mode": "lockstep", "latent_period_steps": 10, "model": "default",
                                          "checkpoint": "", **box}
    assert nodes["calvin_bridge"].overrides == {"backend": "embedded", "clock_mode": "lockstep", **box}


def test_the_backend_sets_the_workspace_box_of_every_node_that_checks_it():
    from openhelix_ros.sim.calvin_backend import calvin_available

    if not calvin_available():
        # Refused before anything starts, naming what is missing.
        with pytest.raises(ValueError, match="backend:=calvin: .*calvin_env"):
            SIM.resolve({"backend": "calvin"})
        pytest.skip("calvin_env is not installed: its measured workspace box cannot be checked")
    from openhelix_ros.sim.backends import workspace

    low, high = workspace("calvin")
    for graph, given in ((SIM, {}), (RECORD, {"policy": "teleop"})):
        nodes = by_name(graph.resolve({"backend": "calvin", **given}))
        for name in ("calvin_bridge", "system1", "teleop"):
            if name in nodes:
                assert nodes[name].overrides["workspace_low"] == list(low)
                assert nodes[name].overrides["workspace_high"] == list(high)
    assert low[2] > 0.2  # CALVIN's desk is 0.44 m up: the play table's box would be wrong there


def test_arguments_reach_every_node_that_takes_them_typed():
    nodes = by_name(EVAL.resolve({"checkpoint": "checkpoints/easy6", "system2_model": "tiny",
                                  "latent_period_steps": "60", "runs_dir": "/tmp/r", "clock_mode": "realtime"}))
    assert nodes["system2"].overrides["checkpoint"] == nodes["system1"].overrides["checkpoint"] == "checkpoints/easy6"
    assert nodes["system2"].overrides["model"] == "tiny" and nodes["system1"].overrides["model"] == "default"
    assert nodes["calvin_bridge"].overrides["backend"] == "embedded"
    assert {nodes[n].overrides["latent_period_steps"] for n in ("system1", "system2", "evaluator")} == {60}
    assert {nodes[n].overrides["clock_mode"] for n in nodes if n != "scripted_expert"} == {"realtime"}
    assert nodes["evaluator"].overrides["runs_dir"] == "/tmp/r"


def test_a_switch_argument_chooses_the_nodes():
    assert [n.name for n in SIM.resolve({"policy": "expert"})] == ["calvin_bridge", "scripted_expert"]
    assert [n.name for n in RECORD.resolve({"policy": "teleop"})] == ["calvin_bridge", "teleop", "recorder"]
    bridge = RECORD.resolve()[0]
    assert bridge.overrides["publish_points_every_step"] is True and bridge.overrides["clock_mode"] == "lockstep"


def test_extra_overrides_win_and_must_name_a_node_of_the_graph():
    nodes = by_name(EVAL.resolve({"runs_dir": "a"}, extra={"evaluator": {"runs_dir": "b", "tasks": ["open_drawer"]}}))
    assert nodes["evaluator"].overrides["runs_dir"] == "b" and nodes["evaluator"].overrides["tasks"] == ["open_drawer"]
    with pytest.raises(ValueError, match="no node recorder"):
        SIM.resolve(extra={"recorder": {}})


@pytest.mark.parametrize("given, message", [
    ({"backend": "gazebo"}, "backend:='gazebo' is not one of embedded, calvin"),
    ({"latent_period_steps": "ten"}, "latent_period_steps:='ten' is not a int"),
    ({"rviz": "maybe"}, "rviz:='maybe' is not true or false"),
    ({"chekpoint": "x"}, "the sim graph has no argument chekpoint"),
])
def test_bad_arguments_are_refused_by_name(given, message):
    with pytest.raises(ValueError, match=message):
        SIM.values(given)


def test_assignments_use_the_ros2_launch_syntax():
    assert parse_assignments(["checkpoint:=a/b", "system1_model:=tiny", "x:="]) == \
        {"checkpoint": "a/b", "system1_model": "tiny", "x": ""}
    with pytest.raises(ValueError, match="not name:=value"):
        parse_assignments(["checkpoint=a"])
    with pytest.raises(ValueError, match="no graph 'simulation'"):
        get_graph("simulation")


def test_parameter_file_values_reads_the_wildcard_section(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("/**:\n  ros__parameters:\n    a: 1\n")
    assert parameter_file_values(path) == {"a": 1}


CLI = Path(openhelix_ros.__file__).parent / "cli"
# Each verb that starts nodes, and the graph declaration it starts them from.
VERB_GRAPHS = {"up": "GRAPHS", "demo": "EVAL", "collect": "RECORD", "bench_graph": "SIM"}


def _names(tree: ast.AST) -> set[str]:
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return used | {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   for alias in node.names}


@pytest.mark.parametrize("verb", sorted(VERB_GRAPHS))
def test_every_verb_starts_its_nodes_from_a_graph_declaration(verb):
    """The same declarations as the launch files (test_launch_files.py checks those), so a verb starts
    the same nodes with the same parameter files and overrides."""
    names = _names(ast.parse((CLI / f"{verb}.py").read_text()))
    assert VERB_GRAPHS[verb] in names and ({"start_graph", "start_node"} & names), verb


def test_no_verb_starts_a_node_by_hand():
    for path in CLI.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"[\"']openhelix_ros\.\w+\.node[\"']", text), path.name
        assert "NodeProcess.start" not in text and "node_command(" not in text, path.name
