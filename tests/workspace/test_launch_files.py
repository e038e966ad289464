"""Static checks of launch/, config/ and rviz/: ros2 launch is not installable here (no registry carries
launch_ros), so every launch file is read as Python source and everything it references is checked to
exist: packages, executables, parameter files, launch arguments, parameter names. Where launch_ros is
installed (a full ROS 2 install), the files are also loaded for real.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
WORKSPACE_PACKAGES = {"openhelix", "openhelix_msgs", "openhelix_ros", "openhelix_training"}
# Packages a launch file may start that this workspace does not provide, and why.
EXTERNAL_EXECUTABLES = {("rviz2", "rviz2"): "RViz, optional (rviz:=true), from the user's ROS 2 install"}
# Parameters every rclpy node has without declaring them.
BUILTIN_PARAMETERS = {"use_sim_time"}


def console_scripts(package: str) -> set[str]:
    source = (ROOT / "src" / package / "setup.py").read_text()
    return set(re.findall(r'"([\w-]+)\s*=\s*[\w.]+:\w+"', source))


def parameter_file(name: str) -> dict:
    path = ROOT / "config" / name
    assert path.exists(), f"config/{name} is referenced but does not exist"
    content = yaml.safe_load(path.read_text())
    assert isinstance(content, dict) and content, f"config/{name} is empty"
    for node, body in content.items():
        assert isinstance(body, dict) and "ros__parameters" in body, \
            f"config/{name}: '{node}' lacks ros__parameters"
    return content


def parameters_of(node_name: str, files: list[str]) -> set[str]:
    names: set[str] = set()
    for name in files:
        for node, body in parameter_file(name).items():
            if node in (node_name, "/**", f"/{node_name}"):
                names |= set(body["ros__parameters"])
    return names


def strings_in(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


class LaunchFile:
    """What one launch file declares and references, read from its syntax tree."""

    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.declared = self._declared_arguments()

    def _declared_arguments(self) -> set[str]:
        declared = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ARGUMENTS" for t in node.targets):
                declared |= {item.elts[0].value for item in node.value.elts}
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                declared.add(node.args[0].value)
        return declared

    def calls(self, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == name]

    def used_arguments(self) -> set[str]:
        used = set()
        for call in self.calls("arg") + self.calls("LaunchConfiguration"):
            if call.args and isinstance(call.args[0], ast.Constant):
                used.add(call.args[0].value)
        for node in ast.walk(self.tree):  # {name: arg(name) for name in FORWARDED}
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "FORWARDED" for t in node.targets):
                used |= {item.value for item in node.value.elts}
        return used

    @staticmethod
    def keyword(call: ast.Call, name: str):
        for keyword in call.keywords:
            if keyword.arg == name:
                return keyword.value
        return None


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_exist(path):
    launch = LaunchFile(path)
    assert "generate_launch_description" in {f.name for f in launch.tree.body if isinstance(f, ast.FunctionDef)}
    scripts = console_scripts("openhelix_ros")

    for call in launch.calls("Node"):
        package = launch.keyword(call, "package").value
        executable = launch.keyword(call, "executable").value
        if (package, executable) in EXTERNAL_EXECUTABLES:
            continue
        assert package == "openhelix_ros", f"{path.name}: unknown package {package!r}"
        assert executable in scripts, f"{path.name}: openhelix_ros has no executable {executable!r}"
        yaml_files = [s for s in strings_in(launch.keyword(call, "parameters")) if s.endswith(".yaml")]
        assert yaml_files, f"{path.name}: node {executable} gets no parameter file"
        known = parameters_of(launch.keyword(call, "name").value, yaml_files) | BUILTIN_PARAMETERS
        for dictionary in ast.walk(launch.keyword(call, "parameters")):
            if isinstance(dictionary, ast.Dict):
                for key in dictionary.keys:
                    if isinstance(key, ast.Constant):
                        assert key.value in known, \
                            f"{path.name}: {executable} gets parameter {key.value!r} that none of {yaml_files} has"
                    elif key is None:  # **common: a dict defined in the function
                        pass

    for call in launch.calls("FindPackageShare"):
        assert call.args[0].value in WORKSPACE_PACKAGES, f"{path.name}: unknown package {call.args[0].value}"
    for text in strings_in(launch.tree):
        if " " in text:  # descriptions, not file names
            continue
        if text.endswith(".rviz"):
            assert (ROOT / "rviz" / text).exists(), f"{path.name}: rviz/{text} missing"
        if text.endswith(".launch.py"):
            assert (ROOT / "launch" / text).exists(), f"{path.name}: launch/{text} missing"

    undeclared = launch.used_arguments() - launch.declared
    assert not undeclared, f"{path.name}: arguments used but not declared: {sorted(undeclared)}"


def test_included_launch_files_declare_the_arguments_passed_to_them():
    for path in LAUNCH_FILES:
        launch = LaunchFile(path)
        for call in launch.calls("IncludeLaunchDescription"):
            included = [s for s in strings_in(call) if s.endswith(".launch.py")]
            assert included, f"{path.name}: an include names no launch file"
            target = LaunchFile(ROOT / "launch" / included[0])
            forwarded = {s for node in ast.walk(launch.tree) if isinstance(node, ast.Assign)
                         and any(getattr(t, "id", "") == "FORWARDED" for t in node.targets)
                         for s in strings_in(node.value)}
            assert forwarded, f"{path.name}: includes {included[0]} without forwarding arguments"
            missing = forwarded - target.declared
            assert not missing, f"{path.name} passes {sorted(missing)} that {included[0]} does not declare"


def test_the_metapackage_installs_launch_config_and_rviz():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"install\(DIRECTORY launch config rviz DESTINATION share/\$\{PROJECT_NAME\}\)", cmake)


def test_every_parameter_file_parses():
    for path in sorted((ROOT / "config").glob("*.yaml")):
        parameter_file(path.name)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installed (no registry carries it); the checks above are static")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_loads_with_launch_ros(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert description.entities
