"""Configuration of the embedded play-table environment."""

from __future__ import annotations

from dataclasses import dataclass

DYNAMIC_MODES = ("left", "forward", "diagonal", "circle")
RENDERERS = ("auto", "tiny", "egl")
ACTION_MODES = ("relative", "absolute")


@dataclass
class PlayTableConfig:
    """Everything that changes how the embedded simulator behaves.

    The defaults reproduce CALVIN's interface: 30 Hz control, 8 physics substeps (240 Hz), relative
    actions scaled by 0.02 m and 0.05 rad, 360 env steps per subtask.
    """

    seed: int = 0
    control_hz: float = 30.0
    physics_substeps: int = 8
    # How a bare 7-vector passed to ``step`` is read; a 3-tuple (pos, euler, gripper) is always absolute.
    action_mode: str = "relative"
    relative_position_scale: float = 0.02  # metres per unit of a relative action
    relative_rotation_scale: float = 0.05  # radians per unit of a relative action
    render: bool = True  # False: observations carry robot/scene state only (fast, for experts/tests)
    renderer: str = "auto"  # "tiny" = PyBullet's TinyRenderer; "egl" = the EGL plugin; "auto" = tiny
    # Draw the arm with its coarse collision meshes (several times faster to render) or the full ones.
    light_robot_visuals: bool = True
    # CALVIN-D: a grasp-related subtask's target block moves (None = static, CALVIN proper).
    dynamic: str | None = None
    dynamic_speed: float = 0.02  # m/s
    dynamic_amplitude: float = 0.08  # metres of travel before a linear motion turns back
    dynamic_circle_radius: float = 0.04
    episode_length: int = 360  # env steps per subtask in the evaluation protocol
    # The arm's Cartesian targets are clipped to this box so that IK is never asked for the absurd.
    workspace_low: tuple[float, float, float] = (-0.60, -0.60, -0.16)
    workspace_high: tuple[float, float, float] = (0.60, 0.36, 0.65)
    # Contact points farther apart than this are not contacts for the oracle (PyBullet keeps
    # manifold points up to its breaking threshold, about 2 cm, which would make "lifted" ambiguous).
    contact_distance: float = 0.003

    def validate(self) -> None:
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if self.renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {RENDERERS}, got {self.renderer!r}")
        if self.dynamic is not None and self.dynamic not in DYNAMIC_MODES:
            raise ValueError(f"dynamic must be None or one of {DYNAMIC_MODES}, got {self.dynamic!r}")
        if self.physics_substeps < 1 or self.control_hz <= 0:
            raise ValueError("physics_substeps must be >= 1 and control_hz > 0")
        if self.dynamic_speed < 0:
            raise ValueError(f"dynamic_speed must be >= 0, got {self.dynamic_speed}")
