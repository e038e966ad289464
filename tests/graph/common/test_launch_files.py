"""Checks of launch/, config/, rviz/ and the graph declarations behind them (openhelix_ros/common/graphs.py).

ros2 launch is not installable here (no registry carries launch_ros), so what a launch file would do is
checked on the declaration it is built from: every node exists and reads existing parameter files,
every launch argument reaches a parameter the node declares (or a remap, or a node switch) and nothing
in a node's own parameter file can override it. tests/graph/common/test_launch_graphs.py then starts the same declarations
as real processes and reads the parameters back; tests/graph/common/test_launch_for_real.py runs the launch
files themselves where launch_ros is installed.
"""

from __future__ import annotations

import ast
import importlib
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

from openhelix_ros.common import graph as graph_names
from openhelix_ros.common.graphs import GRAPHS, RVIZ, RVIZ_CONFIG, SHARED_PARAMETER_FILE

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
# Parameters every rclpy node has without declaring them.
BUILTIN_PARAMETERS = {"use_sim_time"}


def console_scripts(package: str) -> set[str]:
    source = (ROOT / "src" / package / "setup.py").read_text()
    return set(re.findall(r'"([\w-]+)\s*=\s*[\w.]+:\w+"', source))


def declared_parameters(node: str) -> dict:
    module = importlib.import_module(graph_names.NODE_MODULES[node])
    return {spec.name: spec for spec in module.PARAMETERS}


def test_every_launch_file_is_built_from_its_graph_declaration():
    assert {path.name.removesuffix(".launch.py") for path in LAUNCH_FILES} == set(GRAPHS)
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text(), filename=str(path))
        functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert "generate_launch_description" in functions, path.name
        calls = [n for n in ast.walk(functions["generate_launch_description"]) if isinstance(n, ast.Call)]
        names = [c.args[0].value for c in calls if c.args and isinstance(c.args[0], ast.Constant)]
        assert names == [path.name.removesuffix(".launch.py")], \
            f"{path.name} must build the graph of its own name, got {names}"
        imported = {alias.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and n.module == "openhelix_ros.common.launching" for alias in n.names}
        assert imported == {"generate_launch_description"}, path.name


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_nodes_exist_and_every_argument_reaches_a_declared_parameter(name):
    graph = GRAPHS[name]
    scripts = console_scripts("openhelix_ros")
    used = set()
    for entry in graph.nodes:
        assert entry.package == "openhelix_ros" and entry.executable in scripts, entry
        for file in entry.parameter_files:
            assert (ROOT / "config" / file).is_file(), f"{name}: {entry.name} reads config/{file}, which is missing"
        declared = declared_parameters(entry.executable)
        for parameter, argument in entry.arguments.items():
            assert parameter in declared, f"{name}: {argument}:= sets {entry.name}.{parameter}, not declared"
            assert graph.argument(argument).type is type(declared[parameter].default), \
                f"{name}: {argument} is a {graph.argument(argument).type.__name__}, {entry.name}.{parameter} " \
                f"a {type(declared[parameter].default).__name__}"
            used.add(argument)
        for parameter, value in entry.fixed.items():
            assert parameter in declared | dict.fromkeys(BUILTIN_PARAMETERS), f"{name}: {entry.name}.{parameter}"
            assert type(value) is type(declared[parameter].default), f"{name}: {entry.name}.{parameter}={value!r}"
        for topic, argument in entry.remaps.items():
            spec = graph_names.TOPICS_BY_NAME[topic]
            assert entry.name in spec.publishers + spec.subscribers, f"{name}: {entry.name} does not use {topic}"
            used.add(argument)
        if entry.when is not None:
            graph.argument(entry.when[0]).parse(entry.when[1])
            used.add(entry.when[0])
    if graph.offers_rviz:
        used.add(RVIZ.name)
        assert (ROOT / "rviz" / RVIZ_CONFIG).is_file()
    unused = {a.name for a in graph.arguments} - used
    assert not unused, f"the {name} graph declares arguments that reach nothing: {sorted(unused)}"


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_parameter_files_cannot_override_a_launch_argument(path):
    """rcl applies sections in the order their node names first appear across the files: a section
    named after the node in config/<node>.yaml would come after the launch overrides' ``/**`` and win.
    Every file therefore has one ``/**`` section, which the overrides read after it replace."""
    content = yaml.safe_load(path.read_text())
    assert list(content) == ["/**"], f"config/{path.name} has sections {list(content)}; only /** is safe"
    assert isinstance(content["/**"].get("ros__parameters"), dict) and content["/**"]["ros__parameters"]


def test_node_files_set_only_parameters_their_node_declares():
    for path in sorted((ROOT / "config").glob("*.yaml")):
        if path.name == SHARED_PARAMETER_FILE:
            continue
        node = path.stem
        declared = declared_parameters(node)
        values = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
        unknown = set(values) - set(declared)
        assert not unknown, f"config/{path.name} sets {sorted(unknown)}, which {node} does not declare"


def test_launch_nodes_get_an_explicit_namespace_so_overrides_are_node_scoped():
    """launch_ros writes a Node's dict parameters under ``/**`` when the Node has no namespace, under
    its fully qualified name when it has one; every Node the builder makes gets ``namespace=""``."""
    source = (ROOT / "src" / "openhelix_ros" / "openhelix_ros" / "common/launching.py").read_text()
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    assert len(nodes) == 2
    for call in nodes:
        namespace = [k.value for k in call.keywords if k.arg == "namespace"]
        assert namespace and isinstance(namespace[0], ast.Constant) and namespace[0].value == ""


def test_robot_graph_remaps_every_topic_a_cell_wires():
    robot = GRAPHS["robot"]
    remapped = {topic for entry in robot.nodes for topic in entry.remaps}
    for topic in (graph_names.STATIC_IMAGE, graph_names.POINTS, graph_names.JOINT_STATES, graph_names.EE_POSE,
                  graph_names.GRIPPER_COMMAND, graph_names.ESTOP, graph_names.JOINT_TRAJECTORY,
                  graph_names.TARGET_POSE):
        assert topic in remapped, f"robot.launch.py cannot remap {topic}"
    nodes = robot.resolve({"estop": "/cell/estop", "gripper_command": "/gripper/commands"})
    arm = next(node for node in nodes if node.name == "arm_interface")
    assert arm.remaps == {"estop": "/cell/estop", "gripper_command": "/gripper/commands"}
    assert all(node.overrides.get("clock_mode", "realtime") == "realtime" for node in nodes)


def test_the_metapackage_installs_launch_config_and_rviz_and_declares_the_launch_system():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"install\(DIRECTORY launch config rviz DESTINATION share/\$\{PROJECT_NAME\}\)", cmake)
    depends = {e.text for e in ElementTree.parse(ROOT / "package.xml").getroot().iter("exec_depend")}
    assert {"launch", "launch_ros", "ament_index_python", "rviz2"} <= depends


def test_every_node_executable_runs_the_module_the_graph_names():
    """ros2 launch starts lib/openhelix_ros/<executable>; openhelix up runs python -m <module>: the same."""
    source = (ROOT / "src" / "openhelix_ros" / "setup.py").read_text()
    scripts = dict(re.findall(r'"([\w-]+)\s*=\s*([\w.]+):main"', source))
    assert {name: scripts.get(name) for name in graph_names.NODE_MODULES} == graph_names.NODE_MODULES
    for module in graph_names.NODE_MODULES.values():
        assert callable(importlib.import_module(module).main)
