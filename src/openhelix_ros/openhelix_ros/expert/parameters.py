"""The expert node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and expert/node.py
declares them and hands the values to expert/core.py."""

from __future__ import annotations

from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.sim.backends import BACKENDS

PARAMETERS = (
    ParameterSpec("backend", "embedded", f"Whose scene the expert plans in: {' | '.join(BACKENDS)} (calvin: "
                  "calvin_env's scene geometry, measured from its installed files).", read_only=True),
    ParameterSpec("control_rate", 30.0, "Control rate (Hz) of the bridge; waypoint_period is its inverse.",
                  read_only=True, value_range=(1.0, 1000.0)),
    ParameterSpec("horizon", 1, "Waypoints per trajectory (the action repeated); 1 for lockstep, 3 or more "
                  "for a realtime bridge.", read_only=True, value_range=(1, 100)),
)

