"""Configuration of System 1, the 3D diffusion policy (3D Diffuser Actor style)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class System1Config:
    """Every size and switch of System 1. Presets: `tiny` (tests) and `default` (CPU real time:
    sized so that a whole prediction, scene encoding included, stays near 30 ms on a shared 2-core CPU;
    3D Diffuser Actor itself is larger: C=192, more layers, 25 DDPM steps).

    scene_encoder: "camera" lifts per-camera 2D CNN features to 3D with depth and camera parameters
        (3D Diffuser Actor); "points" embeds a coloured world-frame point cloud point by point (what the
        ROS `points` topic carries). A "points" model also accepts camera observations (lifted first).
        "image": a 2D policy over camera patches and proprioception (DP-VLA, HiRT, DexVLA): each camera's
        CNN feature cells with a learned position per cell, no depth and no 3D positions.
    """

    scene_encoder: str = "camera"
    camera_names: tuple[str, ...] = ("static", "gripper")
    image_size: int = 96  # longer side of every camera image is reduced to at most this before the CNN
    cnn_channels: tuple[int, ...] = (16, 32, 64)  # one stride-2 stage each: stride 2**len
    num_scene_tokens: int = 160  # farthest point sampling keeps this many 3D feature tokens
    max_input_points: int = 4096  # "points" encoder: random subset taken before FPS
    embed_dim: int = 128
    num_heads: int = 4
    num_layers: int = 3
    ffn_mult: int = 2
    latent_dim: int = 512  # "split": the goal latent's length; "tokens": the width of each of its tokens
    # How the goal latent becomes the context the waypoints cross-attend to. "split": one latent_dim
    # vector cut into num_latent_tokens context tokens (OpenHelix's single <ACT> latent); "tokens": every
    # token of System 2's token matrix is one context token (up to max_latent_tokens; shorter matrices are
    # padded and the padding masked), for the survey's multi-token latents.
    latent_layout: str = "split"
    num_latent_tokens: int = 4  # "split"
    max_latent_tokens: int = 256  # "tokens"
    # k > 0: also condition on System 2's k-waypoint coarse action chunk (RoboDual's specialist conditions
    # on its generalist's actions), k context tokens beside the latent's
    coarse_actions: int = 0
    trajectory_length: int = 20
    rotary_scale: float = 100.0  # metres -> rotary position units (1 cm per unit)
    # diffusion
    num_train_timesteps: int = 100
    position_beta_schedule: str = "scaled_linear"
    rotation_beta_schedule: str = "squaredcos_cap_v2"
    # "relative": waypoint rotations R_cur^T R_i (3D Diffuser Actor's relative actions); "world": R_i itself.
    # A policy that replans every step and executes one waypoint compounds the small errors of relative
    # rotations into a drifting tool orientation; world-frame targets pull back to the demonstrated one.
    rotation_frame: str = "relative"
    num_inference_steps: int = 5  # DDIM steps; sized for <= 30 ms p50 on a 2-core CPU
    prediction_type: str = "epsilon"
    # losses (3D Diffuser Actor): 30 * L1 position + 10 * L1 rotation + BCE gripper
    position_loss_weight: float = 30.0
    rotation_loss_weight: float = 10.0
    gripper_loss_weight: float = 1.0
    # The position normalization is no config field: it comes from the data, not from a choice, and lives
    # in one Normalization object (normalization.py) that System 1 saves beside its weights.

    def validate(self) -> None:
        if self.rotation_frame not in ("relative", "world"):
            raise ValueError(f"rotation_frame must be 'relative' or 'world', got {self.rotation_frame!r}")
        if self.scene_encoder not in ("camera", "points", "image"):
            raise ValueError(f"scene_encoder must be 'camera', 'points' or 'image', got {self.scene_encoder!r}")
        head_dim = self.embed_dim // self.num_heads
        if self.embed_dim % self.num_heads or head_dim < 6 or head_dim % 2:
            raise ValueError(
                f"embed_dim/num_heads = {self.embed_dim}/{self.num_heads} must be an even integer >= 6 "
                "(3D rotary encoding rotates channel pairs per axis)"
            )
        if self.latent_layout not in ("split", "tokens"):
            raise ValueError(f"latent_layout must be 'split' or 'tokens', got {self.latent_layout!r}")
        if self.latent_layout == "split" and self.latent_dim % self.num_latent_tokens:
            raise ValueError("latent_dim must be divisible by num_latent_tokens")
        if self.max_latent_tokens < 1:
            raise ValueError(f"max_latent_tokens must be >= 1, got {self.max_latent_tokens}")
        if not 0 <= self.coarse_actions <= 64:
            raise ValueError(f"coarse_actions must be in 0..64, got {self.coarse_actions}")
        if self.prediction_type not in ("epsilon", "sample"):
            raise ValueError("prediction_type must be 'epsilon' or 'sample'")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> System1Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown & {"position_bounds", "workspace_bounds"}:
            raise ValueError("position_bounds and workspace_bounds are no System1Config fields: give a "
                             "Normalization to System1 (set_normalization), which saves it as normalization.json")
        if unknown:
            raise ValueError(f"unknown System1Config fields: {sorted(unknown)} (known: {sorted(names)})")
        data = dict(data)
        if "camera_names" in data:
            data["camera_names"] = tuple(data["camera_names"])
        if "cnn_channels" in data:
            data["cnn_channels"] = tuple(data["cnn_channels"])
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> System1Config:
        presets = {
            "default": {},
            "tiny": dict(
                image_size=32,
                cnn_channels=(8, 16),
                num_scene_tokens=32,
                max_input_points=512,
                embed_dim=48,
                num_heads=4,
                num_layers=2,
                latent_dim=32,
                num_latent_tokens=2,
                num_train_timesteps=50,
                num_inference_steps=5,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown System 1 preset {name!r}; choose from {sorted(presets)}")
        cfg = cls.from_dict({**presets[name], **overrides})
        cfg.validate()
        return cfg
