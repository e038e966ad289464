"""Every unit test module imports without rclpy (see conftest.py: a full run has rclpy loaded by the
graph tests, so this checks in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

UNIT_DIR = Path(__file__).resolve().parent

CHECK = """
import importlib.util, sys
sys.path.insert(0, sys.argv[1])  # tests/: the support package
sys.path.insert(0, sys.argv[2])  # tests/unit: this conftest
from conftest import RefuseRos
sys.meta_path.insert(0, RefuseRos())
failures = []
for index, path in enumerate(sys.argv[3:]):
    spec = importlib.util.spec_from_file_location(f"unit_module_{index}", path)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except ImportError as error:
        failures.append(f"{path}: {error}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_unit_test_modules_import_without_rclpy():
    modules = sorted(str(path) for path in UNIT_DIR.rglob("*.py") if path.name != "test_no_ros.py")
    assert len(modules) > 20
    result = subprocess.run([sys.executable, "-c", CHECK, str(UNIT_DIR.parent), str(UNIT_DIR), *modules],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
