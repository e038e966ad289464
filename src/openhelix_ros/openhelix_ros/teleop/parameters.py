"""The teleop node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and teleop/node.py
declares them and hands the values to teleop/core.py."""

from __future__ import annotations

from openhelix_ros.arm.safety import WorkspaceBounds
from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.common.timing import CLOCK_MODES
from openhelix_ros.teleop.core import TWIST_FRAMES, TeleopConfig

_DEFAULTS = TeleopConfig()

PARAMETERS = (
    ParameterSpec("clock_mode", "lockstep", f"{' | '.join(CLOCK_MODES)}: answer each observation "
                  "(lockstep) or stream plans (realtime).", read_only=True),
    ParameterSpec("control_rate", _DEFAULTS.control_rate, "Hz: ticks of the node (wall clock) and the "
                  "integration step of the commanded twist.", read_only=True, value_range=(1.0, 1000.0)),
    ParameterSpec("max_linear_speed", _DEFAULTS.max_linear_speed, "m/s; a faster command is scaled down.",
                  read_only=True, value_range=(0.001, 1.0)),
    ParameterSpec("max_angular_speed", _DEFAULTS.max_angular_speed, "rad/s; a faster command is scaled down.",
                  read_only=True, value_range=(0.001, 3.0)),
    ParameterSpec("command_timeout", _DEFAULTS.command_timeout, "s: a twist older than this counts as stop "
                  "(dead man's switch).", read_only=True, value_range=(0.01, 10.0)),
    ParameterSpec("twist_frame", _DEFAULTS.twist_frame, f"{' | '.join(TWIST_FRAMES)}: axes the twist is "
                  "expressed in.", read_only=True),
    ParameterSpec("horizon", _DEFAULTS.horizon, "Waypoints per trajectory: 1 for lockstep, a few for realtime.",
                  read_only=True, value_range=(1, 100)),
    ParameterSpec("max_lead", _DEFAULTS.max_lead, "m the target may run ahead of the measured pose.",
                  read_only=True, value_range=(0.001, 1.0)),
    ParameterSpec("workspace_low", list(WorkspaceBounds().low), "Lower corner of the workspace box (world, m).",
                  read_only=True),
    ParameterSpec("workspace_high", list(WorkspaceBounds().high), "Upper corner of the workspace box (world, m).",
                  read_only=True),
)

