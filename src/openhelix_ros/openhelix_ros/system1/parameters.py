"""The system1 node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and system1/node.py
declares them and hands the values to system1/core.py."""

from __future__ import annotations

from openhelix_ros.arm.parameters import safety_parameters
from openhelix_ros.common import graph
from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.common.supervision import worker_deadline_parameter
from openhelix_ros.common.timing import CLOCK_MODES
from openhelix_ros.system1.core import CAMERA_SYSTEM1_CONFIGS, SYSTEM1_CONFIGS

PARAMETERS = (
    ParameterSpec("model", "tiny", f"System 1 configuration: {' | '.join(SYSTEM1_CONFIGS)} (point-cloud scene "
                  f"encoder) or {' | '.join(CAMERA_SYSTEM1_CONFIGS)} (3D Diffuser Actor, random weights; reads "
                  "camera/<name>/points); ignored when 'checkpoint' is set.", read_only=True),
    ParameterSpec("checkpoint", "", "Checkpoint directory (model, training checkpoint or run directory); "
                  "overrides 'model'. Must be a scene_encoder 'points' policy.", read_only=True),
    ParameterSpec("device", "cpu", "Torch device for inference.", read_only=True),
    ParameterSpec("num_inference_steps", 0, "DDIM denoising steps; 0 = the model's default.", read_only=True,
                  value_range=(0, 1000)),
    ParameterSpec("replan_rate", 10.0, "realtime: plans per second at most; 0 = as fast as new points come.",
                  read_only=True, value_range=(0.0, 1000.0)),
    ParameterSpec("clock_mode", "realtime", f"{' | '.join(CLOCK_MODES)} (lockstep uses sim time from /clock).",
                  read_only=True),
    ParameterSpec("latent_period_steps", 0, "lockstep Asy(N): plan step t with the latent of step "
                  "max(0, (floor(t/N) - 1) * N); 0 = the latent of the same step.", read_only=True,
                  value_range=(0, 100000)),
    ParameterSpec("control_rate", 30.0, "Env steps per second of sim time (step = round(stamp * rate)).",
                  read_only=True, value_range=(1.0, 10000.0)),
    ParameterSpec("max_latent_age", 2.0, "No trajectory is published when the latent's image is older than "
                  "this (s of the active clock). Lockstep Asy(N) latents are up to (2N - 1) / control_rate old.",
                  read_only=True, value_range=(0.001, 1e6)),
    ParameterSpec("latent_wait_timeout", 3.0, "lockstep: wall-clock seconds to wait for the latent Asy(N) "
                  "requires (and for the ee_pose of the same step) before going on with an earlier one (logged "
                  "as not exact). Keep it below the bridge's step_timeout, or the bridge holds the pose first.",
                  read_only=True, value_range=(0.0, 600.0)),
    ParameterSpec("waypoint_period", 1.0 / 30.0, "Seconds between published waypoints.", read_only=True,
                  value_range=(0.001, 10.0)),
    ParameterSpec("drop_first_waypoint", True, "Drop the model's waypoint 0 (the current pose).", read_only=True),
    ParameterSpec("temporal_ensemble_plans", 0, "Temporal ensembling: each waypoint is the weighted mean of what "
                  "the last N plans predicted for its slot (RoboDual: 8); 0 = off.", read_only=True,
                  value_range=(0, 1000)),
    ParameterSpec("temporal_ensemble_decay", 0.1, "Temporal ensembling weights exp(-decay * i), i = 0 the oldest "
                  "plan (ACT's rule; RoboDual 0.1).", read_only=True, value_range=(0.0, 100.0)),
    *safety_parameters(linear_speed_limit=10.0, angular_speed_limit=20.0),
    ParameterSpec("finger_joints", ["panda_finger_joint1", "panda_finger_joint2"], "joint_states entries whose "
                  "positions add up to the gripper opening width (m).", read_only=True),
    ParameterSpec("gripper_open_width", 0.07, "Opening width (m) at and above which the gripper counts as "
                  "open in the proprioception (CALVIN's Panda opens to 0.08 m).", read_only=True,
                  value_range=(0.0, 1.0)),
    ParameterSpec("world_frame", graph.WORLD_FRAME, "frame_id of clouds, poses and trajectories.", read_only=True),
    ParameterSpec("publish_markers", True, "Publish the visualization/trajectory MarkerArray.", read_only=True),
    ParameterSpec("seed", 0, "Seed of the diffusion noise: the same inputs give the same trajectory.",
                  read_only=True),
    ParameterSpec("torch_threads", 0, "Intra-op threads for torch; 0 = torch's default.", read_only=True,
                  value_range=(0, 256)),
    # 3dda at 25 DDPM steps takes ~2 s on one CPU thread: 60 s is a hang, not a slow plan.
    worker_deadline_parameter(60.0),
)

