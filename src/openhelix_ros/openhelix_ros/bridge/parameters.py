"""The calvin_bridge node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and bridge/node.py
declares them and hands the values to bridge/core.py."""

from __future__ import annotations

from rcl_interfaces.msg import ParameterType

from openhelix_ros.arm.safety import WorkspaceBounds
from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.common.timing import CLOCK_MODES
from openhelix_ros.sim import BACKENDS, DYNAMIC_MODES
from openhelix_ros.sim.protocol import RELEASE_EXECUTE_LEN

_DEFAULT_BOUNDS = WorkspaceBounds()

PARAMETERS = (
    ParameterSpec("backend", "embedded", f"Simulator: {' | '.join(BACKENDS)} (calvin needs calvin_env).",
                  read_only=True),
    ParameterSpec("clock_mode", "lockstep", f"{' | '.join(CLOCK_MODES)}: lockstep publishes /clock and steps "
                  "only when the policy acted; realtime steps at control_rate on the wall clock.",
                  read_only=True),
    ParameterSpec("control_rate", 30.0, "Control steps per second (CALVIN: 30); sim time per step in "
                  "lockstep.", read_only=True, value_range=(1.0, 1000.0)),
    ParameterSpec("waypoints_per_plan", 1, "Lockstep: waypoints executed from one trajectory before the "
                  "bridge waits for a new plan (1 = replan every step).", read_only=True,
                  value_range=(1, 1000)),
    ParameterSpec("step_timeout", 5.0, "Lockstep: seconds (wall clock) to wait for a plan before logging a "
                  "warning and holding the pose for one step; counted from the first instruction after a reset.",
                  read_only=True, value_range=(0.01, 3600.0)),
    ParameterSpec("resend_after", 1.0, "Lockstep: while waiting for a plan, publish the observation again "
                  "every this many seconds (a node that started late or lost it gets it then); 0 = never.",
                  read_only=True, value_range=(0.0, 3600.0)),
    ParameterSpec("render", True, "Render both cameras (images, depth, points). False: state topics only, "
                  "about ten times faster.", read_only=True),
    ParameterSpec("renderer", "auto", "Embedded simulator's renderer: auto | tiny | egl.", read_only=True),
    ParameterSpec("dynamic", "", f"CALVIN-D: '' (static blocks) or {' | '.join(DYNAMIC_MODES)}; may be "
                  "changed at run time (takes effect at the next instruction)."),
    ParameterSpec("dynamic_speed", 0.02, "CALVIN-D block speed (m/s); may be changed at run time.",
                  value_range=(0.0, 1.0)),
    ParameterSpec("seed", 0, "Seed of the simulator's initial state and of resets without one.",
                  read_only=True),
    ParameterSpec("publish_points_every_step", False, "Lockstep: publish points on every step, not only on "
                  "steps that wait for a plan (recording needs them all). Realtime always publishes them.",
                  read_only=True),
    ParameterSpec("workspace_low", list(_DEFAULT_BOUNDS.low), "Lower corner (m, world) of the box "
                  "trajectories must stay in; one outside is rejected.", read_only=True),
    ParameterSpec("workspace_high", list(_DEFAULT_BOUNDS.high), "Upper corner (m, world) of that box.",
                  read_only=True),
    ParameterSpec("dataset_path", "", "calvin backend: a CALVIN dataset split to build the scene from "
                  "(empty: calvin_env's packaged configuration).", read_only=True),
    ParameterSpec("protocol", "", f"Evaluation protocol, set by the evaluator for a goal and back to '' after: '' "
                  "(no evaluator: steps as soon as it can) | calvin (waypoints_per_plan, no clip) | release (up to "
                  f"{RELEASE_EXECUTE_LEN} waypoints of each plan open-loop, positions clipped to "
                  "release_position_low/high). Set, lockstep: each published state waits for a check_tasks call "
                  "before the world moves on."),
    ParameterSpec("release_position_low", [], "Release protocol: lower corner (m, world) executed positions "
                  "are clipped to (CALVIN: act_min_bound[:3] of the split's statistics.yaml, read from "
                  "dataset_path when this is empty); empty: no clip.", type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                  read_only=True),
    ParameterSpec("release_position_high", [], "Release protocol: upper corner of that box (act_max_bound[:3]).",
                  type=ParameterType.PARAMETER_DOUBLE_ARRAY, read_only=True),
)

