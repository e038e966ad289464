"""Unit tests need no ROS: the components' cores are sans-IO (events and time in, commands out), so
nothing under tests/unit may import rclpy, not even lazily inside a test.

When a session collects only tests/unit (``pytest tests/unit``), an import hook refuses rclpy for the
whole session. In a full run the graph tests load rclpy too, so ``test_no_ros.py`` imports every unit
test module in a fresh interpreter with the same hook instead.
"""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path

UNIT_DIR = Path(__file__).resolve().parent
FORBIDDEN = ("rclpy",)


class RefuseRos(importlib.abc.MetaPathFinder):
    """Raises ImportError for the forbidden packages; everything else imports as usual."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} imported under tests/unit: unit tests drive the ROS-free cores; "
                              "a test that needs ROS belongs in tests/graph/<component>")
        return None


def _only_unit_tests(config) -> bool:
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return bool(paths) and all(path == UNIT_DIR or UNIT_DIR in path.parents for path in paths)


def pytest_configure(config):
    if _only_unit_tests(config) and not any(name in sys.modules for name in FORBIDDEN):
        sys.meta_path.insert(0, RefuseRos())
