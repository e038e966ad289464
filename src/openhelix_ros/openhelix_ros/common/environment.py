"""The ROS environment every OpenHelix-ROS process runs in, unless the user set it otherwise.

Set before rclpy is initialised (rcl reads these at init):
- discovery stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; ``ROS_LOCALHOST_ONLY``
  does nothing in kilted), so nothing reaches beyond loopback by default;
- logs and state stay inside the project (``ROS_HOME``, ``ROS_LOG_DIR``) rather than in ``~/.ros``;
- Fast DDS, the middleware the PyPI wheels ship.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

ROS_DEFAULTS = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
}


def project_root(start: Path | None = None) -> Path:
    """The repository root: ``$OPENHELIX_HOME``, else the nearest parent of ``start`` (default: the
    working directory) or of this file that holds ``src/openhelix_ros``, else the working directory."""
    if os.environ.get("OPENHELIX_HOME"):
        return Path(os.environ["OPENHELIX_HOME"]).resolve()
    for origin in (Path(start or Path.cwd()).resolve(), Path(__file__).resolve()):
        for candidate in (origin, *origin.parents):
            if (candidate / "src" / "openhelix_ros").is_dir():
                return candidate
    return Path.cwd().resolve()


def apply_ros_defaults(environ: MutableMapping[str, str] | None = None,
                       root: Path | None = None) -> MutableMapping[str, str]:
    """Fill in the project's ROS defaults where ``environ`` (default ``os.environ``) has none.

    Values the user already set win, so ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` reaches a real robot.
    """
    env = os.environ if environ is None else environ
    for key, value in ROS_DEFAULTS.items():
        env.setdefault(key, value)
    ros_home = Path(env.setdefault("ROS_HOME", str((root or project_root()) / ".ros")))
    env.setdefault("ROS_LOG_DIR", str(ros_home / "log"))
    return env


def config_dir(root: Path | None = None) -> Path:
    """The graph's parameter files: ``config/`` of a source checkout, else the installed
    ``share/openhelix/config`` (colcon or ament install of the metapackage)."""
    source = (root or project_root()) / "config"
    if (source / "graph.yaml").is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("openhelix")) / "config"
    except (ImportError, LookupError) as error:
        raise FileNotFoundError(f"no config/graph.yaml under {source} and no installed openhelix package "
                                f"({error})") from error
