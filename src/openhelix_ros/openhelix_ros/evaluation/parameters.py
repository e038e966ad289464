"""The evaluator node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and evaluation/node.py
declares them and hands the values to evaluation/core.py."""

from __future__ import annotations

from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.evaluation.core import CLOCK_MODES
from openhelix_ros.sim.backends import BACKENDS

PARAMETERS = (
    ParameterSpec("bridge_name", "calvin_bridge", "Node name of the bridge whose 'dynamic' parameter the "
                  "dynamic-* variants set (through <bridge_name>/set_parameters; relative names resolve in "
                  "this node's namespace).", read_only=True),
    ParameterSpec("runs_dir", "runs", "Directory under which each run writes <run_name>/ (relative to the "
                  "working directory).", read_only=True),
    ParameterSpec("backend", "embedded", f"The simulator behind the bridge ({' | '.join(BACKENDS)}): whose "
                  "start states the chains reset to (CALVIN's own on calvin).", read_only=True),
    ParameterSpec("clock_mode", "lockstep", f"How subtask steps are counted: {' or '.join(CLOCK_MODES)} "
                  "(lockstep: the bridge's step counter; realtime: scene_state messages at 30 Hz).",
                  read_only=True),
    ParameterSpec("control_rate", 30.0, "Control rate (Hz) of the bridge; converts latent age to env steps.",
                  read_only=True, value_range=(1.0, 1000.0)),
    ParameterSpec("latent_period_steps", 0, "Asy(N) of the graph; not used here, recorded in results.json.",
                  read_only=True, value_range=(0, 10_000)),
    ParameterSpec("service_timeout", 10.0, "Seconds to wait for the bridge's services when a goal starts, and "
                  "for a set_parameters answer.", value_range=(0.1, 600.0)),
    ParameterSpec("graph_timeout", 300.0, "Seconds a goal waits for a policy (and System 2 when System 1 "
                  "needs one) and matched instruction subscribers before its first instruction; models take "
                  "a while to load. On timeout the run starts anyway, with a warning.", value_range=(0.0, 3600.0)),
    ParameterSpec("stall_timeout", 30.0, "Seconds (wall clock) without a scene_state or service answer "
                  "before the current subtask counts as failed.", value_range=(0.1, 3600.0)),
    ParameterSpec("video_chains", 10, "How many chains of each run are filmed from the static camera, from the "
                  "first: <run>/videos/chain_NNN.mp4 with the plan, instruction, subtask, latent age and "
                  "outcome burned in (0: none). Encoded in the background, never on the lockstep path.",
                  value_range=(0, 100_000)),
)

