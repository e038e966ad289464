"""``openhelix info``: what ROS 2 and Python stack this process sees, and whether the interfaces load."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import sys

ENV_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "RMW_IMPLEMENTATION", "ROS_HOME",
            "ROS_LOG_DIR", "AMENT_PREFIX_PATH")
DISTRIBUTIONS = ("ros-rclpy", "ros-rmw-fastrtps-cpp", "torch", "transformers", "diffusers",
                 "pybullet", "rosbags")
INTERFACE_MODULES = ("openhelix_msgs.msg", "openhelix_msgs.srv", "openhelix_msgs.action")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def collect() -> dict:
    report: dict = {"python": sys.version.split()[0], "executable": sys.executable,
                    "environment": {key: os.environ.get(key) for key in ENV_KEYS},
                    "versions": {}, "interfaces": {}}
    for name in DISTRIBUTIONS:
        try:
            report["versions"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            report["versions"][name] = None
    for module in INTERFACE_MODULES:
        try:
            loaded = importlib.import_module(module)
            report["interfaces"][module] = sorted(n for n in dir(loaded) if n[:1].isupper())
        except ImportError as error:
            report["interfaces"][module] = f"error: {error}"
    return report


def run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"Python {report['python']} ({report['executable']})")
        for key, value in report["environment"].items():
            print(f"  {key}={value if value is not None else '(unset)'}")
        for name, version in report["versions"].items():
            print(f"  {name}: {version or 'not installed'}")
        for module, names in report["interfaces"].items():
            print(f"  {module}: {', '.join(names) if isinstance(names, list) else names}")
    broken = [m for m, names in report["interfaces"].items() if not isinstance(names, list)]
    return 1 if broken else 0
