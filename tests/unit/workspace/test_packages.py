"""Package-level contracts: import boundaries, the ROS environment defaults, the `openhelix` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from openhelix_ros.common.environment import apply_ros_defaults, project_root

ROOT = Path(__file__).resolve().parents[3]


def test_openhelix_training_imports_without_rclpy():
    # Training runs on machines without ROS: importing the package (and its public API) must not
    # pull in rclpy. sys.modules[...] = None makes any such import fail loudly.
    code = ("import sys; sys.modules['rclpy'] = None; import openhelix_training, pkgutil, importlib\n"
            "for m in pkgutil.walk_packages(openhelix_training.__path__, 'openhelix_training.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "print('rclpy' in sys.modules and sys.modules['rclpy'] is not None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_ros_defaults_keep_traffic_local_and_logs_in_the_project(tmp_path):
    env = apply_ros_defaults({}, root=tmp_path)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["ROS_HOME"] == str(tmp_path / ".ros")
    assert env["ROS_LOG_DIR"] == str(tmp_path / ".ros" / "log")


def test_user_settings_win_over_defaults(tmp_path):
    env = apply_ros_defaults({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_HOME": "/var/ros"},
                             root=tmp_path)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert env["ROS_LOG_DIR"] == "/var/ros/log"


def test_project_root_is_found_from_inside_the_tree():
    assert project_root(ROOT / "src" / "openhelix_msgs" / "msg") == ROOT


def test_openhelix_info_reports_the_interfaces():
    openhelix = Path(sys.executable).with_name("openhelix")
    result = subprocess.run([str(openhelix), "info", "--json"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"GoalLatent", "EETrajectory", "Instruction", "SceneState", "EvaluationProgress"} <= set(
        report["interfaces"]["openhelix_msgs.msg"])
    assert {"ResetScene", "CheckTasks"} <= set(report["interfaces"]["openhelix_msgs.srv"])
    assert "RunEvaluation" in report["interfaces"]["openhelix_msgs.action"]
    assert report["versions"]["ros-rclpy"] == "9.1.2"


def test_unknown_verb_is_a_clear_error():
    openhelix = Path(sys.executable).with_name("openhelix")
    result = subprocess.run([str(openhelix), "fly"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown verb 'fly'" in result.stderr


def test_every_interface_field_is_documented():
    # Field comments state units and frames: every field has a comment block above it, or belongs to
    # a group of fields (no blank line between them) under one.
    undocumented = []
    for path in sorted((ROOT / "src" / "openhelix_msgs").glob("*/*.*")):
        if path.suffix not in {".msg", ".srv", ".action"}:
            continue
        documented = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("#"):
                documented = True
            elif not stripped or stripped == "---":
                documented = False
            elif not documented:
                undocumented.append(f"{path.name}:{number}: {stripped}")
    assert not undocumented, "fields without a comment:\n" + "\n".join(undocumented)
