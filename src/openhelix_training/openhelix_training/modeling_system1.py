"""System 1: a 3D diffusion policy in the manner of 3D Diffuser Actor.

Scene: per-camera 2D CNN features lifted to world-frame 3D points with depth and camera parameters
(or a coloured point cloud embedded point by point), reduced by farthest point sampling. Denoiser: the
20 noisy waypoints attend to each other and to the scene with relative 3D rotary position encoding,
to the goal latent from System 2 with plain cross-attention, and are modulated by AdaLN driven by the
diffusion timestep and the proprioception. Diffusion runs with diffusers' DDPM schedulers in training
and DDIM at inference (few steps); the scene and latent keys/values are computed once per observation
and reused at every denoising step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import fpsample
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from .checkpoint import NORMALIZATION_NAME, SYSTEM1_MODEL_TYPE, CheckpointError, read_config
from .configuration_system1 import System1Config
from .geometry import euler_xyz_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from .goal import LatentGoal, LatentGoalError, check_latent_goal
from .normalization import LEGACY_BOUND_NAMES, Normalization, NormalizationError
from .observation import Observation, ObservationError
from .pretrained import PretrainedModelMixin

PROPRIO_DIM = 10  # xyz, 6D rotation, gripper openness in [0, 1]


def proprio_from_robot_obs(robot_obs: np.ndarray) -> np.ndarray:
    """CALVIN robot_obs (15) -> the 10-D proprioception (tcp xyz, 6D rotation, gripper openness).

    Openness comes from the last gripper action (+1 open -> 1, -1 close -> 0), as 3D Diffuser Actor."""
    robot_obs = np.asarray(robot_obs, dtype=np.float64)
    if robot_obs.shape != (15,):
        raise ObservationError(f"robot_obs must have 15 entries, got shape {robot_obs.shape}")
    rot = euler_xyz_to_matrix(robot_obs[3:6])
    openness = 1.0 if robot_obs[14] > 0 else 0.0
    return np.concatenate([robot_obs[:3], matrix_to_rot6d(rot), [openness]]).astype(np.float32)


@dataclass
class Trajectory:
    """A predicted trajectory: world-frame positions (T, 3), rotations (T, 3, 3), 6D rotations (T, 6),
    gripper openness probability (T,), and the positions relative to the current tool point (T, 3)."""

    positions: np.ndarray
    rotations: np.ndarray
    rot6d: np.ndarray
    gripper_open: np.ndarray
    relative_positions: np.ndarray

    @property
    def gripper_command(self) -> np.ndarray:
        """CALVIN's convention: +1 open, -1 close."""
        return np.where(self.gripper_open >= 0.5, 1.0, -1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# building blocks


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Rotary3D(nn.Module):
    """Relative 3D rotary position encoding: a third of each head's rotated channel pairs turns with x, a
    third with y, a third with z, so q.k depends only on the offset between the two points. Pairs are
    (i, i + n/2) ("rotate half" layout), which needs no strided slicing."""

    def __init__(self, head_dim: int, scale: float):
        super().__init__()
        per_axis = head_dim // 6
        self.rotated = 6 * per_axis  # channels past this stay unrotated when head_dim % 6 != 0
        inv_freq = 1.0 / (1000.0 ** (torch.arange(per_axis, dtype=torch.float32) / per_axis))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.scale = scale

    def forward(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # pos (B, N, 3) -> cos, sin (B, 1, N, rotated)
        ang = ((pos.float() * self.scale)[..., None] * self.inv_freq).flatten(-2)  # B N 3F
        ang = torch.cat([ang, ang], dim=-1)
        return ang.cos()[:, None], ang.sin()[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    n = cos.shape[-1]
    if n == x.shape[-1]:
        return _rotate(x, cos, sin)
    return torch.cat([_rotate(x[..., :n], cos, sin), x[..., n:]], dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def attention(q: torch.Tensor, k_t: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention written out, with keys already transposed (B, H, D, N): for 20 queries and a
    few hundred keys it is several times cheaper on a CPU than the fused kernel's setup. ``bias``
    (B, 1, 1, N) is added to the logits (a large negative value masks padding keys)."""
    w = torch.matmul(q * (q.shape[-1] ** -0.5), k_t)
    if bias is not None:
        w = w + bias
    return torch.matmul(w.softmax(dim=-1), v)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def keys_values(self, context: torch.Tensor, rope=None, mask: torch.Tensor | None = None) -> tuple:
        """Keys (rotated, transposed to (B, H, D, N), contiguous) and values (B, H, N, D) of a context, and
        with ``mask`` (B, N; False: padding) the logit bias that hides the padding; computed once per
        observation for the scene and the latent."""
        k, v = self.kv(context).chunk(2, dim=-1)
        k, v = self.split(k), self.split(v)
        if rope is not None:
            k = apply_rotary(k, *rope)
        kv = (k.transpose(-1, -2).contiguous(), v.contiguous())
        if mask is None or bool(mask.all()):
            return kv
        bias = torch.zeros(mask.shape, dtype=k.dtype, device=k.device).masked_fill(~mask, -1e9)
        return kv + (bias[:, None, None],)

    def forward(self, x: torch.Tensor, kv: tuple, rope=None) -> torch.Tensor:
        q = self.split(self.q(x))
        if rope is not None:
            q = apply_rotary(q, *rope)
        o = attention(q, *kv)
        return self.out(o.transpose(1, 2).flatten(2))



class SelfAttention(nn.Module):
    """Attention of the waypoints to each other, one fused q/k/v projection, rotary on q and k."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        o = attention(q, k.transpose(-1, -2), v)
        return self.out(o.transpose(1, 2).flatten(2))


class DenoiserLayer(nn.Module):
    """Self-attention among waypoints, cross-attention to the 3D scene (both rotary), cross-attention to
    the goal latent, feed-forward; each sublayer with AdaLN-zero modulation (12 vectors per layer, made
    for all layers at once by System1.ada from the timestep + proprioception conditioning)."""

    def __init__(self, dim: int, heads: int, ffn_mult: int):
        super().__init__()
        self.dim = dim
        self.self_attn = SelfAttention(dim, heads)
        self.scene_attn = Attention(dim, heads)
        self.latent_attn = Attention(dim, heads)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))

    def _norm(self, x, shift, scale):
        return torch.addcmul(shift, F.layer_norm(x, (self.dim,)), 1 + scale)

    def forward(self, x, mods, traj_rope, scene_kv, latent_kv, scene_rope="trajectory"):
        """``scene_rope``: the waypoints' rotary encoding for the scene attention (3D scene tokens), or
        None for scene tokens without 3D positions (image patches)."""
        m = mods.unbind(1)  # mods (B, 12, 1, d): twelve (B, 1, d) shift/scale/gate vectors
        h = self._norm(x, m[0], m[1])
        x = torch.addcmul(x, m[2], self.self_attn(h, traj_rope))
        h = self._norm(x, m[3], m[4])
        x = torch.addcmul(x, m[5], self.scene_attn(h, scene_kv, traj_rope if scene_rope == "trajectory" else scene_rope))
        h = self._norm(x, m[6], m[7])
        x = torch.addcmul(x, m[8], self.latent_attn(h, latent_kv))
        h = self._norm(x, m[9], m[10])
        return torch.addcmul(x, m[11], self.ffn(h))


def feature_cnn(cfg: System1Config) -> nn.Sequential:
    """The small image CNN both camera encoders train from scratch: one stride-2 conv + GroupNorm + GELU
    stage per ``cnn_channels`` entry, then a 1x1 conv to ``embed_dim`` (stride 2 ** len(cnn_channels))."""
    layers, c_in = [], 3
    for c in cfg.cnn_channels:
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.GELU()]
        c_in = c
    layers += [nn.Conv2d(c_in, cfg.embed_dim, 1)]
    return nn.Sequential(*layers)


class CameraFeatureEncoder(nn.Module):
    """A small CNN trained from scratch (no pretrained CLIP is available offline), shared by all cameras,
    plus a learned per-camera embedding."""

    def __init__(self, cfg: System1Config):
        super().__init__()
        self.cnn = feature_cnn(cfg)
        self.camera_embed = nn.Parameter(torch.zeros(len(cfg.camera_names), cfg.embed_dim))
        self.stride = 2 ** len(cfg.cnn_channels)
        self.image_size = cfg.image_size

    def forward(self, cams: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats, xyzs, valids = [], [], []
        for i, cam in enumerate(cams):
            rgb = cam["rgb"].float() / 255.0 if cam["rgb"].dtype == torch.uint8 else cam["rgb"].float()
            b, _, h, w = rgb.shape
            # downscale so the longer side is at most image_size (never upscale: the wrist camera is small)
            scale = min(1.0, self.image_size / max(h, w))
            if scale < 1.0:
                size = (max(1, round(h * scale)), max(1, round(w * scale)))
                x = F.interpolate(rgb, size=size, mode="bilinear", antialias=True)
            else:
                x = rgb
            f = self.cnn((x - 0.45) / 0.25)  # B C hf wf
            hf, wf = f.shape[-2:]
            feats.append(f.flatten(2).transpose(1, 2) + self.camera_embed[i])
            # lift the centre of every feature cell with the depth at that pixel of the original image
            u = ((torch.arange(wf, device=rgb.device) + 0.5) * (w / wf) - 0.5).round().clamp(0, w - 1)
            v = ((torch.arange(hf, device=rgb.device) + 0.5) * (h / hf) - 0.5).round().clamp(0, h - 1)
            vv, uu = torch.meshgrid(v, u, indexing="ij")
            flat_idx = (vv * w + uu).long().reshape(-1)
            depth = cam["depth"].float().reshape(b, -1)[:, flat_idx]  # B, hf*wf
            k = cam["intrinsics"].float()
            uu, vv = uu.reshape(1, -1), vv.reshape(1, -1)
            xc = (uu - k[:, 0, 2:3]) / k[:, 0, 0:1] * depth
            yc = (vv - k[:, 1, 2:3]) / k[:, 1, 1:2] * depth
            pc = torch.stack([xc, yc, depth, torch.ones_like(depth)], dim=-1)  # B N 4
            world = pc @ cam["extrinsics"].float().transpose(1, 2)
            valid = torch.isfinite(depth) & (depth > 0)
            xyzs.append(torch.where(valid[..., None], world[..., :3], torch.zeros_like(world[..., :3])))
            valids.append(valid)
        return torch.cat(feats, 1), torch.cat(xyzs, 1), torch.cat(valids, 1)


class PointFeatureEncoder(nn.Module):
    """Per-point embedding of colour and (workspace-normalized) position."""

    def __init__(self, cfg: System1Config):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(6, cfg.embed_dim), nn.GELU(), nn.Linear(cfg.embed_dim, cfg.embed_dim))

    def forward(self, xyz_norm: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([xyz_norm, rgb * 2 - 1], dim=-1))


class ImagePatchEncoder(nn.Module):
    """A 2D scene encoder: every camera image resized to image_size x image_size, the small CNN's feature
    cells as tokens, each with a learned position (per cell) and camera embedding. No depth, no 3D."""

    def __init__(self, cfg: System1Config):
        super().__init__()
        self.cnn = feature_cnn(cfg)
        self.image_size = cfg.image_size
        cells = -(-cfg.image_size // 2 ** len(cfg.cnn_channels))  # ceil: stride-2 convolutions with padding 1
        self.cell_embed = nn.Parameter(torch.randn(cells * cells, cfg.embed_dim) * 0.02)
        self.camera_embed = nn.Parameter(torch.zeros(len(cfg.camera_names), cfg.embed_dim))

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        """images: one (B, 3, H, W) batch per camera (uint8 or floats in [0, 1]) -> tokens (B, N, d)."""
        tokens = []
        for i, rgb in enumerate(images):
            x = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
            f = self.cnn((x - 0.45) / 0.25).flatten(2).transpose(1, 2)
            tokens.append(f + self.cell_embed + self.camera_embed[i])
        return torch.cat(tokens, 1)


def farthest_point_indices(xyz: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Indices of n points chosen by farthest point sampling among the valid ones; when fewer are valid,
    all of them, repeated to n (duplicates only re-weight attention slightly)."""
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        raise ObservationError("no scene point has a valid depth")
    if len(idx) <= n:
        return np.resize(idx, n)
    pts = np.ascontiguousarray(xyz[idx], dtype=np.float32)
    chosen = fpsample.bucket_fps_kdline_sampling(pts, n, h=5, start_idx=0)
    return idx[np.asarray(chosen, dtype=np.int64)]


# ----------------------------------------------------------------------------------------------------
# the policy


class System1(PretrainedModelMixin, nn.Module):
    config_class = System1Config
    model_type = SYSTEM1_MODEL_TYPE
    config_key = "system1"
    default_preset = "default"

    def __init__(self, config: System1Config, normalization: Normalization | None = None):
        super().__init__()
        config.validate()
        self.config = config
        d = config.embed_dim
        if config.scene_encoder == "camera":
            self.camera_encoder = CameraFeatureEncoder(config)
        elif config.scene_encoder == "image":
            self.image_encoder = ImagePatchEncoder(config)
        else:
            self.point_encoder = PointFeatureEncoder(config)
        self.rotary = Rotary3D(d // config.num_heads, config.rotary_scale)
        if config.latent_layout == "split":
            self.latent_in = nn.Linear(config.latent_dim // config.num_latent_tokens, d)
            self.latent_pos = nn.Parameter(torch.zeros(config.num_latent_tokens, d))
        else:
            self.latent_in = nn.Linear(config.latent_dim, d)
            self.latent_pos = nn.Parameter(torch.zeros(config.max_latent_tokens, d))
        if config.coarse_actions:
            # a coarse waypoint as System 1's own targets: normalised relative position, 6D rotation, openness
            self.coarse_in = nn.Linear(10, d)
            self.coarse_pos = nn.Parameter(torch.zeros(config.coarse_actions, d))
        self.proprio_in = nn.Sequential(nn.Linear(PROPRIO_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.time_in = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.traj_in = nn.Linear(9, d)
        self.waypoint_embed = nn.Parameter(torch.randn(config.trajectory_length, d) * 0.02)
        self.layers = nn.ModuleList(
            [DenoiserLayer(d, config.num_heads, config.ffn_mult) for _ in range(config.num_layers)]
        )
        # AdaLN-zero modulation of every layer from one projection of the conditioning
        self.ada = nn.Linear(d, config.num_layers * 12 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)  # position noise (3), rotation noise (6), gripper logit (1)
        # The bounds as tensors on the model's device, derived from self.normalization (the one source,
        # saved as normalization.json): not persistent, so the weights file does not hold a second copy.
        self.normalization = normalization if normalization is not None else Normalization()
        self.register_buffer("position_bounds", torch.tensor(self.normalization.position_bounds, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("workspace_bounds", torch.tensor(self.normalization.workspace_bounds, dtype=torch.float32),
                             persistent=False)
        # Goal latents are centred and scaled before use: a frozen LLM's hidden state at <ACT> is dominated
        # by the prompt template (cosine ~0.998 between any two instructions of the play table), which a
        # randomly initialised input layer would take many steps to see past. Identity until the trainer
        # sets them from the training latents (set_latent_normalization).
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(()))
        self.position_scheduler = self._make_scheduler(config.position_beta_schedule)
        self.rotation_scheduler = self._make_scheduler(config.rotation_beta_schedule)

    def _make_scheduler(self, beta_schedule: str) -> DDPMScheduler:
        return DDPMScheduler(
            num_train_timesteps=self.config.num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type=self.config.prediction_type,
            clip_sample=False,
        )

    # --- construction / persistence -----------------------------------------------------------------

    def save_companion_files(self, directory: Path) -> None:
        self.normalization.save(directory)

    def load_companion_files(self, directory: Path, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # checkpoints written before normalization.json kept the bounds as buffers in the weights
        legacy = {name: weights.pop(name) for name in LEGACY_BOUND_NAMES if name in weights}
        config = {} if (directory / NORMALIZATION_NAME).is_file() else read_config(directory)
        try:
            self.set_normalization(Normalization.read_saved(directory, legacy, config))
        except NormalizationError as exc:
            raise CheckpointError(str(exc)) from exc
        return weights

    def optional_weight_prefixes(self) -> tuple[str, ...]:
        # checkpoints written before the latent normalization existed keep the identity
        return ("latent_mean", "latent_std")

    @classmethod
    def saved_config_fields(cls, saved: dict) -> dict:
        # older config.json files also held the bounds as config fields (read by load_companion_files)
        return {name: value for name, value in saved.items() if name not in LEGACY_BOUND_NAMES}

    def set_normalization(self, normalization: Normalization) -> None:
        if not isinstance(normalization, Normalization):
            raise TypeError(f"set_normalization takes a Normalization, got {type(normalization).__name__}")
        self.normalization = normalization
        with torch.no_grad():
            self.position_bounds.copy_(torch.tensor(normalization.position_bounds, dtype=torch.float32))
            self.workspace_bounds.copy_(torch.tensor(normalization.workspace_bounds, dtype=torch.float32))

    def set_latent_normalization(self, latents) -> None:
        """Centre goal latents on the mean of ``latents`` (N, latent_dim) and scale by the root mean square
        of the centred ones (one number, so the geometry between instructions is kept)."""
        latents = torch.as_tensor(np.asarray(latents), dtype=torch.float32).reshape(-1, self.config.latent_dim)
        mean = latents.mean(0)
        std = (latents - mean).pow(2).mean().sqrt()
        with torch.no_grad():
            self.latent_mean.copy_(mean)
            self.latent_std.copy_(std.clamp_min(1e-6) if len(latents) > 1 else torch.ones(()))

    # --- normalization ------------------------------------------------------------------------------

    @staticmethod
    def _to_unit(x, bounds):
        lo, hi = bounds[0], bounds[1]
        return (x - lo) / (hi - lo).clamp_min(1e-6) * 2 - 1

    @staticmethod
    def _from_unit(x, bounds):
        lo, hi = bounds[0], bounds[1]
        return (x + 1) / 2 * (hi - lo) + lo

    # --- observation -> tensors ---------------------------------------------------------------------

    def observation_tensors(self, observations: list[Observation], rng: np.random.Generator | None = None) -> dict:
        """Batches observations the way this model reads them (also used by the training collate)."""
        cfg = self.config
        for obs in observations:
            obs.validate()
        if cfg.scene_encoder == "image":
            return {"images": self._camera_images(observations)}
        if cfg.scene_encoder == "camera":
            if any(o.cameras is None for o in observations):
                raise ObservationError(
                    "this System 1 reads per-camera RGB-D (scene_encoder='camera'); got a point cloud only"
                )
            cams = []
            for i, name in enumerate(cfg.camera_names):
                views = [o.cameras[i] if i < len(o.cameras) else None for o in observations]
                if any(v is None for v in views):
                    raise ObservationError(f"observation lacks camera {i} ('{name}'); expected {cfg.camera_names}")
                shapes = {np.asarray(v.rgb).shape for v in views}
                if len(shapes) > 1:
                    raise ObservationError(f"camera '{name}': images of different sizes in one batch: {shapes}")
                cams.append({
                    "rgb": torch.from_numpy(np.stack([np.asarray(v.rgb) for v in views])).permute(0, 3, 1, 2),
                    "depth": torch.from_numpy(np.stack([np.asarray(v.depth, np.float32) for v in views])),
                    "intrinsics": torch.from_numpy(np.stack([np.asarray(v.intrinsics, np.float32) for v in views])),
                    "extrinsics": torch.from_numpy(np.stack([np.asarray(v.extrinsics, np.float32) for v in views])),
                })
            return {"cameras": cams}
        rng = rng if rng is not None else np.random.default_rng(0)
        xyzs, rgbs = [], []
        for obs in observations:
            xyz, rgb = obs.point_cloud()
            take = rng.choice(len(xyz), cfg.max_input_points, replace=len(xyz) < cfg.max_input_points)
            if len(xyz) > cfg.num_scene_tokens:
                sub = farthest_point_indices(xyz[take], np.ones(len(take), bool), cfg.num_scene_tokens)
            else:
                sub = np.resize(np.arange(len(take)), cfg.num_scene_tokens)
            xyzs.append(xyz[take][sub])
            rgbs.append(rgb[take][sub])
        return {"points": torch.from_numpy(np.stack(xyzs)), "colors": torch.from_numpy(np.stack(rgbs)).float()}

    def _camera_images(self, observations: list[Observation]) -> list[torch.Tensor]:
        """Each configured camera's RGB over the batch, (B, 3, H, W) uint8: from ``images`` (an RGB-only
        observation) or from the cameras' views."""
        batches = []
        for i, name in enumerate(self.config.camera_names):
            views = []
            for o in observations:
                source = o.images if o.images is not None else [c.rgb for c in (o.cameras or [])]
                if i >= len(source):
                    raise ObservationError(f"observation lacks camera {i} ('{name}'); this image policy reads "
                                           f"{self.config.camera_names}")
                views.append(np.asarray(source[i]))
            shapes = {v.shape for v in views}
            if len(shapes) > 1:
                raise ObservationError(f"camera '{name}': images of different sizes in one batch: {shapes}")
            batches.append(torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2))
        return batches

    # --- scene and context --------------------------------------------------------------------------

    def encode_scene(self, obs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """3D feature tokens (B, M, d) and their world positions (B, M, 3); image patches (B, M, d) and
        None (no 3D position)."""
        dev = self.position_bounds.device
        if "images" in obs:
            return self.image_encoder([img.to(dev) for img in obs["images"]]), None
        if "cameras" in obs:
            cams = [{k: v.to(dev) for k, v in c.items()} for c in obs["cameras"]]
            feats, xyz, valid = self.camera_encoder(cams)
            idx = np.stack([
                farthest_point_indices(xyz[b].detach().float().cpu().numpy(), valid[b].cpu().numpy(),
                                       self.config.num_scene_tokens)
                for b in range(xyz.shape[0])
            ])
            idx = torch.from_numpy(idx).to(dev)
            feats = torch.gather(feats, 1, idx[..., None].expand(-1, -1, feats.shape[-1]))
            xyz = torch.gather(xyz, 1, idx[..., None].expand(-1, -1, 3))
            return feats, xyz
        if "points" not in obs:
            raise ObservationError("observation tensors carry neither 'cameras' nor 'points'")
        xyz = obs["points"].to(dev).float()
        feats = self.point_encoder(self._to_unit(xyz, self.workspace_bounds), obs["colors"].to(dev).float())
        return feats, xyz

    def latent_context(self, latent: torch.Tensor, latent_mask: torch.Tensor | None = None,
                       coarse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The goal as context tokens (B, N, d) and their mask (B, N).

        latent: (B, latent_dim) for "split" (a (B, 1, latent_dim) one-token matrix too), (B, N, latent_dim)
        for "tokens" with ``latent_mask`` (B, N) marking real tokens; coarse: (B, k, 10) waypoints (relative
        position, 6D rotation, openness in [0, 1]) when the model conditions on coarse actions."""
        cfg = self.config
        b = latent.shape[0]
        latent = (latent - self.latent_mean) / self.latent_std
        if cfg.latent_layout == "split":
            if latent.dim() == 3 and latent.shape[1] == 1:
                latent = latent[:, 0]
            if latent.dim() != 2 or latent.shape[1] != cfg.latent_dim:
                raise ObservationError(f"this System 1 splits one {cfg.latent_dim}-D latent into "
                                       f"{cfg.num_latent_tokens} tokens; got a latent of shape {tuple(latent.shape)}")
            lat = self.latent_in(latent.view(b, cfg.num_latent_tokens, -1)) + self.latent_pos
            mask = torch.ones(lat.shape[:2], dtype=torch.bool, device=lat.device)
        else:
            if latent.dim() == 2:
                latent = latent[:, None]
            n = latent.shape[1]
            if latent.dim() != 3 or latent.shape[2] != cfg.latent_dim:
                raise ObservationError(f"this System 1 takes {cfg.latent_dim}-D latent tokens; got {tuple(latent.shape)}")
            if n > cfg.max_latent_tokens:
                raise ObservationError(f"goal latent has {n} tokens, more than this System 1's max_latent_tokens="
                                       f"{cfg.max_latent_tokens}")
            lat = self.latent_in(latent) + self.latent_pos[:n]
            mask = (torch.ones((b, n), dtype=torch.bool, device=lat.device) if latent_mask is None
                    else latent_mask.to(lat.device).bool())
        if cfg.coarse_actions:
            if coarse is None or tuple(coarse.shape[1:]) != (cfg.coarse_actions, 10):
                got = "none" if coarse is None else str(tuple(coarse.shape))
                raise ObservationError(f"this System 1 conditions on {cfg.coarse_actions} coarse actions "
                                       f"(B, {cfg.coarse_actions}, 10); got {got}")
            coarse = coarse.to(lat.device).float()
            unit = torch.cat([self._to_unit(coarse[..., :3], self.position_bounds), coarse[..., 3:9],
                              coarse[..., 9:10] * 2 - 1], dim=-1)
            lat = torch.cat([lat, self.coarse_in(unit) + self.coarse_pos], dim=1)
            mask = torch.cat([mask, torch.ones(unit.shape[:2], dtype=torch.bool, device=lat.device)], dim=1)
        return lat, mask

    def prepare_context(self, obs: dict, latent: torch.Tensor, proprio: torch.Tensor,
                        latent_mask: torch.Tensor | None = None, coarse: torch.Tensor | None = None) -> dict:
        """Everything that does not change across denoising steps: scene and latent keys/values per layer
        (scene keys already rotated), and the proprioception embedding."""
        feats, xyz = self.encode_scene(obs)
        scene_rope = self.rotary(xyz) if xyz is not None else None
        lat, mask = self.latent_context(latent, latent_mask, coarse)
        return {
            "scene_kv": [layer.scene_attn.keys_values(feats, scene_rope) for layer in self.layers],
            "latent_kv": [layer.latent_attn.keys_values(lat, mask=mask) for layer in self.layers],
            "proprio_emb": self.proprio_in(self._normalize_proprio(proprio)),
            "cur_pos": proprio[:, :3],
            # image patches have no 3D position: the waypoints' queries to them stay unrotated
            "scene_rope": "trajectory" if xyz is not None else None,
        }

    def _normalize_proprio(self, proprio: torch.Tensor) -> torch.Tensor:
        pos = self._to_unit(proprio[:, :3], self.workspace_bounds)
        return torch.cat([pos, proprio[:, 3:9], proprio[:, 9:10] * 2 - 1], dim=-1)

    def modulation(self, t: torch.Tensor, ctx: dict) -> torch.Tensor:
        """AdaLN parameters (B, num_layers * 12 * d) for timesteps t (B,)."""
        cond = self.time_in(timestep_embedding(t, self.config.embed_dim)) + ctx["proprio_emb"]
        return self.ada(F.silu(cond))

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, ctx: dict, mods: torch.Tensor | None = None):
        """Predicted noise (or sample) for the 9-D trajectory (B, T, 9), and gripper logits (B, T)."""
        if mods is None:
            mods = self.modulation(t, ctx)
        rel = self._from_unit(x_t[..., :3].clamp(-2, 2), self.position_bounds)
        traj_rope = self.rotary(ctx["cur_pos"][:, None] + rel)
        h = self.traj_in(x_t) + self.waypoint_embed
        mods = mods.view(mods.shape[0], len(self.layers), 12, 1, -1)
        for i, layer in enumerate(self.layers):
            h = layer(h, mods[:, i], traj_rope, ctx["scene_kv"][i], ctx["latent_kv"][i], ctx["scene_rope"])
        out = self.head(self.out_norm(h))
        return out[..., :9], out[..., 9]

    # --- training -----------------------------------------------------------------------------------

    def trajectory_targets(self, rel_positions: torch.Tensor, rot6d: torch.Tensor,
                           proprio: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised diffusion targets (B, T, 9) from the samples' relative trajectories; with
        rotation_frame 'world' the rotations are composed with the current one (proprio[:, 3:9])."""
        if self.config.rotation_frame == "world":
            if proprio is None:
                raise ValueError("rotation_frame 'world' needs the proprioception to compose rotations")
            cur = rot6d_to_matrix(proprio[:, 3:9])[:, None]
            rot6d = matrix_to_rot6d(cur @ rot6d_to_matrix(rot6d))
        return torch.cat([self._to_unit(rel_positions, self.position_bounds), rot6d], dim=-1)

    def compute_loss(self, obs: dict, latent, proprio, rel_positions, rot6d, gripper_open,
                     generator: torch.Generator | None = None, latent_mask=None, coarse=None) -> dict:
        """3D Diffuser Actor's loss: 30 * L1 position + 10 * L1 rotation (on the predicted noise) + BCE on
        gripper openness."""
        cfg = self.config
        dev = self.position_bounds.device
        latent, proprio = latent.to(dev).float(), proprio.to(dev).float()
        x0 = self.trajectory_targets(rel_positions.to(dev).float(), rot6d.to(dev).float(), proprio)
        b = x0.shape[0]
        t = torch.randint(0, cfg.num_train_timesteps, (b,), device=dev, generator=generator)
        noise = torch.randn(x0.shape, device=dev, generator=generator)
        x_t = torch.cat([
            self.position_scheduler.add_noise(x0[..., :3], noise[..., :3], t),
            self.rotation_scheduler.add_noise(x0[..., 3:], noise[..., 3:], t),
        ], dim=-1)
        ctx = self.prepare_context(obs, latent, proprio, latent_mask, coarse)
        pred, grip_logit = self.denoise(x_t, t, ctx)
        target = noise if cfg.prediction_type == "epsilon" else x0
        pos_l1 = F.l1_loss(pred[..., :3], target[..., :3])
        rot_l1 = F.l1_loss(pred[..., 3:], target[..., 3:])
        grip = F.binary_cross_entropy_with_logits(grip_logit, gripper_open.to(dev).float())
        loss = cfg.position_loss_weight * pos_l1 + cfg.rotation_loss_weight * rot_l1 + cfg.gripper_loss_weight * grip
        return {"loss": loss, "position_l1": pos_l1.detach(), "rotation_l1": rot_l1.detach(),
                "gripper_bce": grip.detach()}

    def forward(self, obs: dict, latent, proprio, rel_positions, rot6d, gripper_open, generator=None,
                latent_mask=None, coarse=None) -> dict:
        """The training loss (so that wrappers such as DDP see a forward call); see compute_loss."""
        return self.compute_loss(obs, latent, proprio, rel_positions, rot6d, gripper_open, generator, latent_mask,
                                 coarse)

    # --- inference ----------------------------------------------------------------------------------

    def _inference_schedulers(self, steps: int) -> tuple[DDIMScheduler, DDIMScheduler]:
        # DDIM built from the training DDPM's configuration (same betas), cached per step count because
        # building one costs milliseconds of Python. DDIM (eta 0) keeps no state between calls.
        cache = self.__dict__.setdefault("_ddim_cache", {})
        if steps not in cache:
            scheds = []
            for train in (self.position_scheduler, self.rotation_scheduler):
                # "trailing" spacing starts at the last training timestep (pure noise, where sampling
                # begins); diffusers' default "leading" would start 20% short of it at 5 steps
                ddim = DDIMScheduler.from_config(train.config, timestep_spacing="trailing", clip_sample=True,
                                                 clip_sample_range=1.0)
                ddim.set_timesteps(steps)
                scheds.append(ddim)
            cache[steps] = tuple(scheds)
        return cache[steps]

    def sample(self, obs: dict, latent: torch.Tensor, proprio: torch.Tensor, num_inference_steps: int | None = None,
               generator: torch.Generator | None = None, latent_mask=None, coarse=None) -> dict:
        """DDIM sampling; returns relative positions (B, T, 3), 6D rotations (B, T, 6), openness (B, T)."""
        cfg = self.config
        steps = int(num_inference_steps or cfg.num_inference_steps)
        if not 1 <= steps <= cfg.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in 1..{cfg.num_train_timesteps}, got {steps}")
        dev = self.position_bounds.device
        latent, proprio = latent.to(dev).float(), proprio.to(dev).float()
        ctx = self.prepare_context(obs, latent, proprio, latent_mask, coarse)
        b = latent.shape[0]
        pos_sched, rot_sched = self._inference_schedulers(steps)
        x = torch.randn((b, cfg.trajectory_length, 9), device=dev, generator=generator)
        grip_logit = None
        # the modulation depends only on the timestep and the proprioception: one batched call for all steps
        ts = pos_sched.timesteps.to(dev)
        all_mods = self.modulation(ts.repeat_interleave(b), {"proprio_emb": ctx["proprio_emb"].repeat(len(ts), 1)})
        all_mods = all_mods.view(len(ts), b, -1)
        for i, t in enumerate(pos_sched.timesteps):
            tt = torch.full((b,), int(t), device=dev, dtype=torch.long)
            pred, grip_logit = self.denoise(x, tt, ctx, all_mods[i])
            pos = pos_sched.step(pred[..., :3], t, x[..., :3]).prev_sample
            rot = rot_sched.step(pred[..., 3:], t, x[..., 3:]).prev_sample
            x = torch.cat([pos, rot], dim=-1)
        rel = self._from_unit(x[..., :3], self.position_bounds)
        rot6d = matrix_to_rot6d(rot6d_to_matrix(x[..., 3:]))
        return {"relative_positions": rel, "rot6d": rot6d, "gripper_open": torch.sigmoid(grip_logit)}

    def goal_tensors(self, latent) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One goal as this model reads it: the latent (1, latent_dim) or (1, N, latent_dim) and the coarse
        actions (1, k, 10) or None. ``latent``: a goal.LatentGoal, a (latent_dim,) vector or an
        (N, latent_dim) token matrix; ObservationError names what does not fit."""
        cfg = self.config
        if not isinstance(latent, LatentGoal):
            values = np.asarray(latent, dtype=np.float32)
            if cfg.latent_layout == "split" or values.ndim == 1:
                values = values.reshape(1, -1)
            latent = LatentGoal(tokens=values)
        width = cfg.latent_dim if cfg.latent_layout == "tokens" else None
        try:
            goal = check_latent_goal(latent, width, cfg.coarse_actions)
        except LatentGoalError as error:
            raise ObservationError(str(error)) from error
        if cfg.latent_layout == "split":
            if goal.num_tokens != 1 or goal.token_dim != cfg.latent_dim:
                raise ObservationError(f"latent must have {cfg.latent_dim} values in one token, got {goal.describe()}")
            tokens = torch.from_numpy(goal.tokens).reshape(1, -1)
        else:
            if goal.num_tokens > cfg.max_latent_tokens:
                raise ObservationError(f"goal latent has {goal.num_tokens} tokens, more than this System 1's "
                                       f"max_latent_tokens={cfg.max_latent_tokens}")
            tokens = torch.from_numpy(goal.tokens)[None]
        coarse = None
        if cfg.coarse_actions:
            c = goal.coarse
            coarse = torch.from_numpy(np.concatenate([
                c.positions, matrix_to_rot6d(c.rotations.astype(np.float64)).astype(np.float32), c.gripper_open[:, None],
            ], axis=1).astype(np.float32))[None]
        return tokens, coarse

    def predict(self, observation: Observation, latent, proprio, num_inference_steps: int | None = None,
                seed: int | None = 0) -> Trajectory:
        """One trajectory for one observation.

        latent: the goal from System 2 (see goal_tensors: a LatentGoal, a (latent_dim,) vector or a token
        matrix); proprio: 10-D (tcp xyz, 6D rotation relative to the world, gripper openness 0..1), see
        proprio_from_robot_obs. Deterministic for a given seed."""
        latent, coarse = self.goal_tensors(latent)
        proprio = torch.as_tensor(np.asarray(proprio, dtype=np.float32)).reshape(-1)
        if proprio.numel() != PROPRIO_DIM:
            raise ObservationError(f"proprio must have {PROPRIO_DIM} values (xyz, rot6d, gripper), got {proprio.numel()}")
        if not torch.isfinite(proprio).all():
            raise ObservationError("proprio contains NaN or inf")
        was_training = self.training
        if was_training:  # walking the module tree costs ~0.1 ms per call: only when needed
            self.eval()
        try:
            with torch.inference_mode():
                obs = self.observation_tensors([observation])
                gen = None
                if seed is not None:
                    gen = torch.Generator(device=self.position_bounds.device).manual_seed(seed)
                out = self.sample(obs, latent, proprio[None], num_inference_steps, gen, coarse=coarse)
        finally:
            if was_training:
                self.train()
        rel = out["relative_positions"][0].double().cpu().numpy()
        rel_rot = rot6d_to_matrix(out["rot6d"][0].double()).cpu().numpy()
        cur_rot = rot6d_to_matrix(proprio[3:9].double()).numpy()
        # "world": the model's rotations are already world-frame (see System1Config.rotation_frame)
        rotations = rel_rot if self.config.rotation_frame == "world" else np.einsum("ij,njk->nik", cur_rot, rel_rot)
        return Trajectory(
            positions=(rel + proprio[:3].double().numpy()).astype(np.float32),
            rotations=rotations.astype(np.float32),
            rot6d=matrix_to_rot6d(rotations).astype(np.float32),
            gripper_open=out["gripper_open"][0].float().cpu().numpy(),
            relative_positions=rel.astype(np.float32),
        )
