"""System 1 `3dda`: 3D Diffuser Actor's CALVIN model (Ke et al. 2024), with the released module tree and
parameter names, so that `diffuser_actor_calvin_nohistory.pth`, `diffuser_actor_calvin.pth` and OpenHelix's
`policy.pth` load strictly.

Inputs as the release takes them: per-camera RGB in [0, 1] and per-pixel world XYZ (B, ncam, 3, H, W), the
instruction as (B, L, 512) (16 CLIP text tokens, or OpenHelix's one `<ACT>` latent), the proprioception
history (B, nhist, 7: xyz + quaternion, wxyz by default). Output: (B, T, 8) waypoints: xyz, quaternion,
openness probability, relative to the current gripper when `relative` (positions; rotations are what the
release trained on: quaternions of CALVIN's Euler-angle differences).

The pipeline: CLIP ModifiedResNet-50 -> feature pyramid -> stride-8 level lifted to 3D by the point cloud;
vision-language cross-attention; the proprioception cross-attends the scene; the scene tokens are thinned by
farthest point sampling in feature space; the denoiser (relative 3D rotary attention to the full scene, then
self-attention over waypoints + sampled scene tokens interleaved with language cross-attention, all with
AdaLN on the diffusion step + proprioception) predicts the noise of positions and 6D rotations, and
openness logits. Sampling: diffusers' DDPM (25 steps, as released) or DDIM with fewer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from .checkpoint import DIFFUSER_ACTOR_MODEL_TYPE
from .clip_resnet import FeaturePyramid, ModifiedResNetFeatures
from .configuration_diffuser_actor import DiffuserActorConfig
from .pretrained import PretrainedModelMixin

# CLIP's image normalisation (the release applies the transform clip.load returns)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FEATURE_LEVEL = "res3"  # stride 8: 20 x 20 tokens per 160 px camera


# ----------------------------------------------------------------------------------------------------
# rotations (torch, batched; wxyz quaternions)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) wxyz, not necessarily unit -> rotation matrices (..., 3, 3)."""
    w, x, y, z = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    m = torch.stack([
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ], dim=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> quaternions (..., 4) wxyz.

    Each of w, x, y, z can be solved for from the diagonal; the others then follow from off-diagonal
    sums and differences divided by it. The component with the largest square root is used, which is
    the best conditioned; the sign is whatever that choice gives (that component positive), as the
    release does it, so that quaternions compare entry by entry with its output."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.reshape(m.shape[:-2] + (9,)).unbind(-1)
    squares = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                           1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    roots = torch.where(squares > 0, squares.clamp_min(0).sqrt(), torch.zeros_like(squares))
    times = torch.stack([  # row k: the quaternion multiplied by 4 * its k-th component
        torch.stack([roots[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, roots[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, roots[..., 2] ** 2, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, roots[..., 3] ** 2], dim=-1),
    ], dim=-2)
    candidates = times / (2.0 * roots[..., None].clamp_min(0.1))
    best = roots.argmax(dim=-1)
    return torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first column, then the second (the release's `ortho6d`)."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def rot6d_to_matrix(r6: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by the release's construction: x = a / |a|, z = x cross b normalised, y = z
    cross x (norms floored at 1e-8)."""
    x = r6[..., :3] / r6[..., :3].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    z = torch.cross(x, r6[..., 3:6], dim=-1)
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    y = torch.cross(z, x, dim=-1)
    return torch.stack([x, y, z], dim=-1)


def normalise_quaternion(q: torch.Tensor) -> torch.Tensor:
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-10)


def release_euler_to_matrix(euler: torch.Tensor) -> torch.Tensor:
    """CALVIN Euler angles (..., 3) -> the matrices the release builds from them (..., 3, 3).

    The release converts CALVIN's angles with pytorch3d's `euler_angles_to_matrix(e, "XYZ")`, the
    product Rx(e0) Ry(e1) Rz(e2), which is not the rotation CALVIN means by them (PyBullet's, Rz Ry Rx).
    The network was trained on that product, so it must be fed it, and its outputs read back with the
    inverse below."""
    c, s = euler.cos(), euler.sin()
    one, zero = torch.ones_like(euler[..., 0]), torch.zeros_like(euler[..., 0])

    def matrix(*rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rx = matrix((one, zero, zero), (zero, c[..., 0], -s[..., 0]), (zero, s[..., 0], c[..., 0]))
    ry = matrix((c[..., 1], zero, s[..., 1]), (zero, one, zero), (-s[..., 1], zero, c[..., 1]))
    rz = matrix((c[..., 2], -s[..., 2], zero), (s[..., 2], c[..., 2], zero), (zero, zero, one))
    return rx @ ry @ rz


def release_matrix_to_euler(m: torch.Tensor) -> torch.Tensor:
    """The inverse of `release_euler_to_matrix` (pytorch3d's `matrix_to_euler_angles(m, "XYZ")`)."""
    return torch.stack([torch.atan2(-m[..., 1, 2], m[..., 2, 2]),
                        torch.asin(m[..., 0, 2].clamp(-1.0, 1.0)),
                        torch.atan2(-m[..., 0, 1], m[..., 0, 0])], dim=-1)


# ----------------------------------------------------------------------------------------------------
# position encodings


def sinusoidal_embedding(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) -> (N, dim): sines then cosines of x at geometric frequencies 1 .. 1/10000."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=x.device) * -(math.log(10000) / (half - 1)))
    angles = x[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sinusoidal_embedding(x, self.dim)


@torch.no_grad()
def rotary_3d(xyz: torch.Tensor, dim: int) -> torch.Tensor:
    """Relative 3D rotary codes (B, N, dim, 2) = (cos, sin) for points (B, N, 3): the first third of the
    channels turns with x, the second with y, the last with z, in adjacent pairs (2i, 2i+1) at
    frequencies 10000^(-2i / (dim/3)), so that rotated q.k depends only on the offset of two points."""
    b, n, _ = xyz.shape
    third = dim // 3
    freqs = torch.exp(torch.arange(0, third, 2, dtype=torch.float, device=xyz.device) * (-math.log(10000.0) / third))
    angles = xyz[..., :, None] * freqs  # B N 3 third/2
    angles = angles.repeat_interleave(2, dim=-1).reshape(b, n, 3 * third)  # each angle twice: one pair
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rotary(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Rotates each channel pair (2i, 2i+1) of x (B, N, C) by the angle in `code` (B, N, C, 2)."""
    pairs = x.unflatten(-1, (-1, 2))
    turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * code[..., 0] + turned * code[..., 1]


# ----------------------------------------------------------------------------------------------------
# attention layers (parameter names as the release's)


class RotaryMultiheadAttention(nn.Module):
    """Multi-head attention with one packed input projection (`in_proj_weight` (3C, C), `in_proj_bias`) and
    `out_proj`, as nn.MultiheadAttention stores them, plus optional relative rotary codes for queries and
    keys, applied across all C channels before the split into heads. Batch first: (B, N, C)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                key_padding_mask: torch.Tensor | None = None, release_batch_mixing: bool = False) -> torch.Tensor:
        """release_batch_mixing: read keys and values as the release's denoiser does for its language
        cross-attention, where batch-first language tokens (B, L, C) meet a sequence-first attention: their
        memory, split into heads as (L, B * heads, C / heads), mixes batch items when B > 1 and L > 1."""
        c, h = self.dim, self.heads
        w, bias = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, w[:c], bias[:c]) * (c // h) ** -0.5
        k = F.linear(key, w[c:2 * c], bias[c:2 * c])
        v = F.linear(value, w[2 * c:], bias[2 * c:])
        if rotary is not None:
            q, k = apply_rotary(q, rotary[0]), apply_rotary(k, rotary[1])
        b, n_q, n_k = query.shape[0], query.shape[1], key.shape[1]
        q = q.view(b, n_q, h, c // h).transpose(1, 2)
        if release_batch_mixing:
            k = k.reshape(n_k, b, h, c // h).permute(1, 2, 0, 3)
            v = v.reshape(n_k, b, h, c // h).permute(1, 2, 0, 3)
        else:
            k = k.view(b, n_k, h, c // h).transpose(1, 2)
            v = v.view(b, n_k, h, c // h).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(b, n_q, c))


class AdaLN(nn.Module):
    """x * (1 + scale) + shift, scale and shift from the conditioning signal (zero-initialised)."""

    def __init__(self, dim: int):
        super().__init__()
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(cond).chunk(2, dim=-1)
        return x * (1 + scale[:, None]) + shift[:, None]


class FeedforwardLayer(nn.Module):
    """Post-norm residual MLP (hidden width = `hidden`); with AdaLN the input is modulated first and the
    modulated input is the residual."""

    def __init__(self, dim: int, hidden: int, use_adaln: bool):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        for p in (self.linear1.weight, self.linear2.weight):
            nn.init.xavier_uniform_(p)
        if use_adaln:
            self.adaln = AdaLN(dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            x = self.adaln(x, cond)
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class RelativeCrossAttentionLayer(nn.Module):
    """Post-norm residual attention from `query` to `value` (keys = values), the query AdaLN-modulated
    when a conditioning signal is given, with rotary codes when positions are."""

    def __init__(self, dim: int, heads: int, use_adaln: bool):
        super().__init__()
        self.multihead_attn = RotaryMultiheadAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        if use_adaln:
            self.adaln = AdaLN(dim)

    def forward(self, query, value, cond=None, query_pos=None, value_pos=None, release_batch_mixing=False):
        modulated = self.adaln(query, cond) if cond is not None else query
        rotary = None if query_pos is None else (query_pos, value_pos)
        return self.norm(query + self.multihead_attn(modulated, value, value, rotary,
                                                     release_batch_mixing=release_batch_mixing))


class FFWRelativeCrossAttentionModule(nn.Module):
    """Layers of (relative cross-attention, feed-forward) from queries to a fixed context."""

    def __init__(self, dim: int, heads: int, num_layers: int, use_adaln: bool = True):
        super().__init__()
        self.attn_layers = nn.ModuleList(RelativeCrossAttentionLayer(dim, heads, use_adaln) for _ in range(num_layers))
        self.ffw_layers = nn.ModuleList(FeedforwardLayer(dim, dim, use_adaln) for _ in range(num_layers))

    def forward(self, query, value, cond=None, query_pos=None, value_pos=None):
        for attn, ffw in zip(self.attn_layers, self.ffw_layers, strict=True):
            query = ffw(attn(query, value, cond, query_pos, value_pos), cond)
        return query


class FFWRelativeSelfCrossAttentionModule(nn.Module):
    """Layers of relative self-attention and feed-forward; at evenly spaced layers (numpy's
    linspace(0, n_self, n_cross + 1) as integers) a cross-attention to the language comes first. Layers
    without one hold None in `cross_attn_layers`, which keeps the released indices."""

    def __init__(self, dim: int, heads: int, num_self_attn_layers: int, num_cross_attn_layers: int,
                 use_adaln: bool = True, release_batch_mixing: bool = False):
        super().__init__()
        self.release_batch_mixing = release_batch_mixing
        with_cross = set(np.linspace(0, num_self_attn_layers, num_cross_attn_layers + 1, dtype=np.int32).tolist())
        self.self_attn_layers = nn.ModuleList(
            RelativeCrossAttentionLayer(dim, heads, use_adaln) for _ in range(num_self_attn_layers))
        self.cross_attn_layers = nn.ModuleList(
            RelativeCrossAttentionLayer(dim, heads, use_adaln) if i in with_cross else None
            for i in range(num_self_attn_layers))
        self.ffw_layers = nn.ModuleList(FeedforwardLayer(dim, dim, use_adaln) for _ in range(num_self_attn_layers))

    def forward(self, query, context, cond=None, query_pos=None):
        for self_attn, cross_attn, ffw in zip(self.self_attn_layers, self.cross_attn_layers, self.ffw_layers,
                                              strict=True):
            if cross_attn is not None:
                # language has no position: no rotary
                query = cross_attn(query, context, cond, release_batch_mixing=self.release_batch_mixing)
            query = ffw(self_attn(query, query, cond, query_pos, query_pos), cond)
        return query


class LanguageCrossAttentionLayer(nn.Module):
    """Post-norm cross-attention from a sequence to the language tokens, then (optionally) a post-norm
    4x MLP; an optional additive position code on the queries. The release's `ParallelAttentionLayer`
    with only its seq1 -> seq2 branch enabled, whose parameter names it keeps (its FFN exists, and is
    saved, even where it is not applied)."""

    def __init__(self, dim: int, heads: int, apply_ffn: bool, dropout: float = 0.1):
        super().__init__()
        self.apply_ffn = apply_ffn
        self.cross_12 = RotaryMultiheadAttention(dim, heads, dropout=dropout)
        self.dropout_12 = nn.Dropout(dropout)
        self.norm_12 = nn.LayerNorm(dim)
        self.ffn_12 = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout),
                                    nn.Linear(4 * dim, dim), nn.Dropout(dropout))
        self.norm_122 = nn.LayerNorm(dim)

    def forward(self, seq: torch.Tensor, language: torch.Tensor, query_pos: torch.Tensor | None = None):
        query = seq if query_pos is None else seq + query_pos
        seq = self.norm_12(seq + self.dropout_12(self.cross_12(query, language, language)))
        if self.apply_ffn:
            seq = self.norm_122(seq + self.ffn_12(seq))
        return seq


class LanguageCrossAttention(nn.Module):
    def __init__(self, num_layers: int, dim: int, heads: int, apply_ffn: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(LanguageCrossAttentionLayer(dim, heads, apply_ffn) for _ in range(num_layers))

    def forward(self, seq, language, query_pos=None):
        for layer in self.layers:
            seq = layer(seq, language, query_pos)
        return seq


# ----------------------------------------------------------------------------------------------------
# farthest point sampling


def farthest_point_sampling(points: torch.Tensor, count: int, start: int = 0) -> torch.Tensor:
    """Indices (B, count) of farthest point sampling of `points` (B, N, D), as dgl's
    `farthest_point_sampler` does it (which 3D Diffuser Actor calls on its 192-d scene features): float64
    squared distances, the first pick at index `start`, each next pick the point farthest from all picks
    so far (the first such index on ties)."""
    pts = points.detach().to(torch.float64)
    b, n, _ = pts.shape
    picks = torch.empty(b, count, dtype=torch.long, device=pts.device)
    nearest = torch.full((b, n), float("inf"), dtype=torch.float64, device=pts.device)
    current = torch.full((b,), start, dtype=torch.long, device=pts.device)
    rows = torch.arange(b, device=pts.device)
    for i in range(count):
        picks[:, i] = current
        d = ((pts - pts[rows, current][:, None]) ** 2).sum(-1)
        nearest = torch.minimum(nearest, d)
        current = nearest.argmax(dim=1)
    return picks


# ----------------------------------------------------------------------------------------------------
# the model


class Encoder(nn.Module):
    """Scene, language and proprioception encoders (the release's `Encoder`; `goal_gripper_embed` is unused
    on CALVIN and kept because the checkpoints hold it)."""

    def __init__(self, cfg: DiffuserActorConfig):
        super().__init__()
        c, h = cfg.embedding_dim, cfg.num_attn_heads
        self.fps_subsampling_factor = cfg.fps_subsampling_factor
        self.embedding_dim = c
        self.backbone = ModifiedResNetFeatures(cfg.backbone_layers, cfg.backbone_output_dim, cfg.backbone_heads,
                                               cfg.backbone_input_resolution, cfg.backbone_width)
        for p in self.backbone.parameters():
            p.requires_grad = False  # frozen in the release
        self.feature_pyramid = FeaturePyramid(self.backbone.stage_channels, c)
        self.curr_gripper_embed = nn.Embedding(cfg.nhist, c)
        self.gripper_context_head = FFWRelativeCrossAttentionModule(c, h, num_layers=3, use_adaln=False)
        self.goal_gripper_embed = nn.Embedding(1, c)
        self.instruction_encoder = nn.Linear(cfg.instruction_dim, c)
        self.vl_attention = nn.ModuleList([LanguageCrossAttention(cfg.num_vis_ins_attn_layers, c, h)])
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(3, 1, 1), persistent=False)

    def encode_images(self, rgb: torch.Tensor, pcd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rgb, pcd (B, ncam, 3, H, W) -> stride-8 features (B, ncam*h*w, C) and their xyz (B, ncam*h*w, 3),
        the point cloud bilinearly resampled to the feature grid."""
        b, ncam = rgb.shape[:2]
        images = (rgb.flatten(0, 1) - self.pixel_mean) / self.pixel_std
        features = self.feature_pyramid(self.backbone(images))[FEATURE_LEVEL]
        fh, fw = features.shape[-2:]
        xyz = F.interpolate(pcd.flatten(0, 1), (fh, fw), mode="bilinear")
        features = features.view(b, ncam, -1, fh * fw).permute(0, 1, 3, 2).reshape(b, ncam * fh * fw, -1)
        xyz = xyz.view(b, ncam, 3, fh * fw).permute(0, 1, 3, 2).reshape(b, ncam * fh * fw, 3)
        return features, xyz

    def encode_instruction(self, instruction: torch.Tensor) -> torch.Tensor:
        return self.instruction_encoder(instruction)

    def encode_curr_gripper(self, curr_gripper: torch.Tensor, context_feats: torch.Tensor,
                            context: torch.Tensor) -> torch.Tensor:
        """The proprioception history (B, nhist, 3+) as learned tokens placed at its positions, which
        cross-attend the scene: (B, nhist, C)."""
        queries = self.curr_gripper_embed.weight[None].expand(len(curr_gripper), -1, -1)
        return self.gripper_context_head(queries, context_feats,
                                         query_pos=rotary_3d(curr_gripper[..., :3], self.embedding_dim),
                                         value_pos=rotary_3d(context, self.embedding_dim))

    def run_fps(self, features: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Farthest point sampling in feature space keeps N // fps_subsampling_factor scene tokens."""
        n = features.shape[1]
        idx = farthest_point_sampling(features, max(n // self.fps_subsampling_factor, 1), 0)
        sampled = torch.gather(features, 1, idx[..., None].expand(-1, -1, features.shape[-1]))
        sampled_codes = torch.gather(codes, 1, idx[..., None, None].expand(-1, -1, *codes.shape[2:]))
        return sampled, sampled_codes


class DiffusionHead(nn.Module):
    """The denoiser (the release's `DiffusionHead` with `lang_enhanced`): predicts position and 6D rotation
    noise and openness logits (B, T, 10) for a noisy trajectory (B, T, 9)."""

    def __init__(self, cfg: DiffuserActorConfig):
        super().__init__()
        c, h = cfg.embedding_dim, cfg.num_attn_heads
        self.embedding_dim = c
        self.traj_encoder = nn.Linear(9, c)
        self.time_emb = nn.Sequential(SinusoidalPosEmb(c), nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c))
        self.curr_gripper_emb = nn.Sequential(nn.Linear(c * cfg.nhist, c), nn.ReLU(), nn.Linear(c, c))
        self.traj_time_emb = SinusoidalPosEmb(c)
        self.traj_lang_attention = nn.ModuleList([LanguageCrossAttention(1, c, h, apply_ffn=False)])
        self.cross_attn = FFWRelativeCrossAttentionModule(c, h, num_layers=2, use_adaln=True)
        mixing = dict(release_batch_mixing=cfg.release_language_batch_mixing)
        self.self_attn = FFWRelativeSelfCrossAttentionModule(c, h, 4, 3, **mixing)
        self.rotation_proj = nn.Linear(c, c)
        self.rotation_self_attn = FFWRelativeSelfCrossAttentionModule(c, h, 2, 1, **mixing)
        self.rotation_predictor = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, 6))
        self.position_proj = nn.Linear(c, c)
        self.position_self_attn = FFWRelativeSelfCrossAttentionModule(c, h, 2, 1, **mixing)
        self.position_predictor = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, 3))
        self.openess_predictor = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, 1))

    def conditioning(self, timestep: torch.Tensor, gripper_feats: torch.Tensor) -> torch.Tensor:
        """AdaLN signal (B, C): the diffusion step's embedding plus the proprioception tokens'."""
        return self.time_emb(timestep) + self.curr_gripper_emb(gripper_feats.flatten(1))

    def forward(self, trajectory, timestep, context_feats, context_codes, instr_feats, gripper_feats,
                fps_feats, fps_codes):
        c = self.embedding_dim
        steps = trajectory.shape[1]
        traj_feats = self.traj_encoder(trajectory)
        order = self.traj_time_emb(torch.arange(steps, device=trajectory.device))[None].expand(len(trajectory), -1, -1)
        traj_feats = self.traj_lang_attention[0](traj_feats, instr_feats, query_pos=order) + order
        cond = self.conditioning(timestep, gripper_feats)
        traj_codes = rotary_3d(trajectory[..., :3], c)
        traj_feats = self.cross_attn(traj_feats, context_feats, cond, traj_codes, context_codes)
        feats = torch.cat([traj_feats, fps_feats], dim=1)
        codes = torch.cat([traj_codes, fps_codes], dim=1)
        feats = self.self_attn(feats, instr_feats, cond, codes)
        rotation = self.rotation_predictor(
            self.rotation_proj(self.rotation_self_attn(feats, instr_feats, cond, codes)[:, :steps]))
        position_feats = self.position_proj(self.position_self_attn(feats, instr_feats, cond, codes)[:, :steps])
        return torch.cat([self.position_predictor(position_feats), rotation,
                          self.openess_predictor(position_feats)], dim=-1)


class DiffuserActor(PretrainedModelMixin, nn.Module):
    """3D Diffuser Actor for CALVIN. Its state dict is the released one (`encoder.*`, `prediction_head.*`,
    661 tensors at the released widths), so `load_released_state_dict` takes a release checkpoint's
    `weight` dict, `module.` prefixes and all, strictly."""

    config_class = DiffuserActorConfig
    model_type = DIFFUSER_ACTOR_MODEL_TYPE
    config_key = "diffuser_actor"
    default_preset = "3dda"

    def __init__(self, config: DiffuserActorConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.prediction_head = DiffusionHead(config)
        lo, hi = config.location_bounds
        self.register_buffer("location_bounds", torch.tensor([lo, hi], dtype=torch.float32), persistent=False)
        kwargs = dict(num_train_timesteps=config.diffusion_timesteps, prediction_type="epsilon")
        self.position_noise_scheduler = DDPMScheduler(beta_schedule="scaled_linear", **kwargs)
        self.rotation_noise_scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", **kwargs)

    # --- normalisation and rotations ------------------------------------------------------------------

    def normalize_pos(self, pos: torch.Tensor) -> torch.Tensor:
        lo, hi = self.location_bounds
        return (pos - lo) / (hi - lo) * 2.0 - 1.0

    def unnormalize_pos(self, pos: torch.Tensor) -> torch.Tensor:
        lo, hi = self.location_bounds
        return (pos + 1.0) / 2.0 * (hi - lo) + lo

    def _wxyz(self, quaternion: torch.Tensor) -> torch.Tensor:
        return quaternion[..., [3, 0, 1, 2]] if self.config.quaternion_format == "xyzw" else quaternion

    def _from_wxyz(self, quaternion: torch.Tensor) -> torch.Tensor:
        return quaternion[..., [1, 2, 3, 0]] if self.config.quaternion_format == "xyzw" else quaternion

    def pose_to_9d(self, pose: torch.Tensor) -> torch.Tensor:
        """(..., 7+) xyz + quaternion (+ extra) -> (..., 9+) xyz + 6D rotation (+ extra)."""
        quaternion = self._wxyz(normalise_quaternion(pose[..., 3:7]))
        return torch.cat([pose[..., :3], matrix_to_rot6d(quaternion_to_matrix(quaternion)), pose[..., 7:]], dim=-1)

    def pose_from_9d(self, pose: torch.Tensor) -> torch.Tensor:
        """(..., 9+) -> (..., 7+): the 6D rotation back to a quaternion in the configured order."""
        quaternion = self._from_wxyz(matrix_to_quaternion(rot6d_to_matrix(pose[..., 3:9])))
        return torch.cat([pose[..., :3], quaternion, pose[..., 9:]], dim=-1)

    def to_relative(self, pcd: torch.Tensor, curr_gripper: torch.Tensor):
        """Point cloud (B, ncam, 3, H, W) and proprioception made relative to the newest gripper position."""
        center = curr_gripper[:, -1, :3]
        pcd = pcd - center[:, None, :, None, None]
        curr_gripper = torch.cat([curr_gripper[..., :3] - center[:, None], curr_gripper[..., 3:]], dim=-1)
        return pcd, curr_gripper

    # --- the network ----------------------------------------------------------------------------------

    def check_inputs(self, rgb_obs, pcd_obs, instruction, curr_gripper) -> None:
        """Shapes the release's network reads, each refused by name (a ValueError)."""
        cfg = self.config
        ncam, side = len(cfg.camera_names), cfg.image_size
        if rgb_obs.ndim != 5 or rgb_obs.shape[1:] != (ncam, 3, side, side):
            raise ValueError(f"rgb_obs must be (B, {ncam}, 3, {side}, {side}), got {tuple(rgb_obs.shape)}")
        if pcd_obs.shape != rgb_obs.shape:
            raise ValueError(f"pcd_obs must be {tuple(rgb_obs.shape)} like rgb_obs, got {tuple(pcd_obs.shape)}")
        b = rgb_obs.shape[0]
        if instruction.shape != (b, cfg.instruction_length, cfg.instruction_dim):
            raise ValueError(f"instruction must be ({b}, {cfg.instruction_length}, {cfg.instruction_dim}), "
                             f"got {tuple(instruction.shape)}")
        if curr_gripper.ndim != 3 or curr_gripper.shape[:2] != (b, cfg.nhist) or curr_gripper.shape[2] < 7:
            raise ValueError(f"curr_gripper must be ({b}, {cfg.nhist}, 7+): xyz and a quaternion per history frame, "
                             f"got {tuple(curr_gripper.shape)}")
        for name, t in (("rgb_obs", rgb_obs), ("pcd_obs", pcd_obs), ("instruction", instruction),
                        ("curr_gripper", curr_gripper)):
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or inf")

    def encode_inputs(self, rgb_obs, pcd_obs, instruction, curr_gripper):
        """What stays fixed over the denoising steps. pcd_obs and curr_gripper are already normalised,
        curr_gripper in 9-D."""
        c = self.config.embedding_dim
        context_feats, context = self.encoder.encode_images(rgb_obs, pcd_obs)
        instr_feats = self.encoder.encode_instruction(instruction)
        context_feats = self.encoder.vl_attention[0](context_feats, instr_feats)
        gripper_feats = self.encoder.encode_curr_gripper(curr_gripper, context_feats, context)
        context_codes = rotary_3d(context, c)
        fps_feats, fps_codes = self.encoder.run_fps(context_feats, context_codes)
        return dict(context_feats=context_feats, context_codes=context_codes, instr_feats=instr_feats,
                    gripper_feats=gripper_feats, fps_feats=fps_feats, fps_codes=fps_codes)

    def policy_forward_pass(self, trajectory: torch.Tensor, timestep: torch.Tensor, fixed: dict) -> torch.Tensor:
        return self.prediction_head(trajectory, timestep, fixed["context_feats"], fixed["context_codes"],
                                    fixed["instr_feats"], fixed["gripper_feats"], fixed["fps_feats"],
                                    fixed["fps_codes"])

    def _normalized_inputs(self, pcd_obs, curr_gripper):
        pcd_obs = self.normalize_pos(pcd_obs.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        curr_gripper = torch.cat([self.normalize_pos(curr_gripper[..., :3]), curr_gripper[..., 3:]], dim=-1)
        return pcd_obs, self.pose_to_9d(curr_gripper[..., :7])

    def inference_schedulers(self):
        """The position and rotation schedulers sampling uses: the training DDPM schedulers (the release),
        or DDIM schedulers with the same noise schedules."""
        if self.config.inference_scheduler == "ddpm":
            pos, rot = self.position_noise_scheduler, self.rotation_noise_scheduler
        else:
            pos = DDIMScheduler.from_config(self.position_noise_scheduler.config)
            rot = DDIMScheduler.from_config(self.rotation_noise_scheduler.config)
        pos.set_timesteps(self.config.num_inference_steps)
        rot.set_timesteps(self.config.num_inference_steps)
        return pos, rot

    def conditional_sample(self, fixed: dict, batch: int, steps: int, generator: torch.Generator | None = None,
                           noise: torch.Tensor | None = None) -> torch.Tensor:
        """Denoises (B, T, 9) from Gaussian noise; returns (B, T, 10) with the last step's openness logits.
        Noise is drawn as the release draws it (its first draw, then one per scheduler step), from
        `generator` or, when None, from torch's global generator."""
        device = fixed["context_feats"].device
        pos_sched, rot_sched = self.inference_schedulers()
        if noise is None:
            noise = torch.randn((batch, steps, 9), generator=generator, device=device)
        trajectory = noise
        out = None
        for t in pos_sched.timesteps:
            out = self.policy_forward_pass(trajectory, t * torch.ones(batch, device=device).long(), fixed)
            pos = pos_sched.step(out[..., :3], t, trajectory[..., :3], generator=generator).prev_sample
            rot = rot_sched.step(out[..., 3:9], t, trajectory[..., 3:9], generator=generator).prev_sample
            trajectory = torch.cat([pos, rot], dim=-1)
        return torch.cat([trajectory, out[..., 9:]], dim=-1)

    @torch.no_grad()
    def compute_trajectory(self, rgb_obs, pcd_obs, instruction, curr_gripper, generator=None, noise=None,
                           steps: int | None = None) -> torch.Tensor:
        """(B, T, 8): positions (relative to the current gripper when `relative`), quaternion, openness
        probability. `steps` waypoints (the config's trajectory_length by default)."""
        self.check_inputs(rgb_obs, pcd_obs, instruction, curr_gripper)
        if self.config.relative:
            pcd_obs, curr_gripper = self.to_relative(pcd_obs, curr_gripper)
        pcd_obs, curr_gripper = self._normalized_inputs(pcd_obs, curr_gripper)
        fixed = self.encode_inputs(rgb_obs, pcd_obs, instruction, curr_gripper)
        steps = steps or self.config.trajectory_length
        sample = self.conditional_sample(fixed, len(rgb_obs), steps, generator, noise)
        trajectory = self.pose_from_9d(sample)
        return torch.cat([self.unnormalize_pos(trajectory[..., :3]), trajectory[..., 3:7],
                          trajectory[..., 7:8].sigmoid()], dim=-1)

    def compute_loss(self, gt_trajectory, rgb_obs, pcd_obs, instruction, curr_gripper,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """The release's training loss for ground-truth trajectories (B, T, 8: xyz, quaternion, openness):
        30 * L1 position noise + 10 * L1 rotation noise + BCE openness, at a random diffusion step."""
        self.check_inputs(rgb_obs, pcd_obs, instruction, curr_gripper)
        if self.config.relative:
            pcd_obs, curr_gripper = self.to_relative(pcd_obs, curr_gripper)
        gt_openess = gt_trajectory[..., 7:]
        gt = torch.cat([self.normalize_pos(gt_trajectory[..., :3]), gt_trajectory[..., 3:7]], dim=-1)
        gt = self.pose_to_9d(gt)
        pcd_obs, curr_gripper = self._normalized_inputs(pcd_obs, curr_gripper)
        fixed = self.encode_inputs(rgb_obs, pcd_obs, instruction, curr_gripper)
        noise = torch.randn(gt.shape, generator=generator, device=gt.device)
        t = torch.randint(0, self.config.diffusion_timesteps, (len(gt),), generator=generator, device=gt.device)
        noisy = torch.cat([self.position_noise_scheduler.add_noise(gt[..., :3], noise[..., :3], t),
                           self.rotation_noise_scheduler.add_noise(gt[..., 3:9], noise[..., 3:9], t)], dim=-1)
        pred = self.policy_forward_pass(noisy, t, fixed)
        cfg = self.config
        loss = (cfg.position_loss_weight * F.l1_loss(pred[..., :3], noise[..., :3])
                + cfg.rotation_loss_weight * F.l1_loss(pred[..., 3:9], noise[..., 3:9]))
        if gt_openess.numel():
            loss = loss + F.binary_cross_entropy_with_logits(pred[..., 9:], gt_openess)
        return loss

    # --- CALVIN observations in, CALVIN actions out, as the release's evaluation does it ----------------

    def calvin_inputs(self, cameras: list[tuple[np.ndarray, np.ndarray]], history: list[tuple[np.ndarray, np.ndarray]],
                      instruction: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The network's inputs (batch of one) from what a CALVIN step gives, prepared as the release's
        evaluation prepares them: per camera, in `camera_names` order, an RGB image (H, W, 3) uint8 and
        the world XYZ of every pixel (H, W, 3); both resized to `camera_resolution` (RGB bilinearly, XYZ
        by nearest pixel: the 84 px gripper camera becomes 200 px) and cropped by `crop` on every side.
        `history`: the newest `nhist` (tcp position, CALVIN Euler angles), oldest first; `instruction`
        (L, 512): the text tokens or the `<ACT>` latent."""
        cfg = self.config
        if len(cameras) != len(cfg.camera_names):
            raise ValueError(f"{len(cameras)} cameras given, this model reads {len(cfg.camera_names)}: {cfg.camera_names}")
        device = self.location_bounds.device
        side, crop = cfg.camera_resolution, cfg.crop
        rgbs, pcds = [], []
        for name, (rgb, xyz) in zip(cfg.camera_names, cameras, strict=True):
            rgb, xyz = np.asarray(rgb), np.asarray(xyz, dtype=np.float32)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or xyz.shape != rgb.shape:
                raise ValueError(f"camera {name!r}: rgb and xyz must both be (H, W, 3), got {rgb.shape} and {xyz.shape}")
            image = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
            points = torch.from_numpy(xyz).permute(2, 0, 1)[None].to(device)
            if image.shape[-2:] != (side, side):
                image = F.interpolate(image, size=(side, side), mode="bilinear", align_corners=False)
                points = F.interpolate(points, size=(side, side), mode="nearest")
            rgbs.append(image[0, :, crop:side - crop, crop:side - crop])
            pcds.append(points[0, :, crop:side - crop, crop:side - crop])
        if len(history) != cfg.nhist:
            raise ValueError(f"history must hold {cfg.nhist} (position, euler) frames, got {len(history)}")
        positions = torch.tensor(np.array([np.asarray(p, dtype=np.float64) for p, _ in history]), dtype=torch.float32)
        eulers = torch.tensor(np.array([np.asarray(e, dtype=np.float64) for _, e in history]), dtype=torch.float32)
        quaternions = self._from_wxyz(matrix_to_quaternion(release_euler_to_matrix(eulers)))
        gripper = torch.cat([positions, quaternions], dim=-1)[None].to(device)
        instruction = torch.as_tensor(np.asarray(instruction, dtype=np.float32)).reshape(
            -1, cfg.instruction_dim)[None].to(device)
        return torch.stack(rgbs)[None], torch.stack(pcds)[None], instruction, gripper

    @torch.no_grad()
    def predict_calvin(self, cameras, history, instruction, generator: torch.Generator | None = None) -> dict:
        """One policy call as the release's evaluation makes it: absolute waypoints (T, 3), CALVIN Euler
        angles (T, 3) (the current ones plus the predicted differences, as the release adds them),
        openness probabilities (T,) and gripper actions (T,) (+1 open when openness >= 0.5, else -1)."""
        inputs = self.calvin_inputs(cameras, history, instruction)
        out = self.compute_trajectory(*inputs, generator=generator)[0]
        position = np.asarray(history[-1][0], dtype=np.float64)
        # the release adds the differences to the current angles read back from its quaternion, i.e.
        # wrapped into (-pi, pi] by its own convention
        euler = release_matrix_to_euler(quaternion_to_matrix(self._wxyz(inputs[3][0, -1, 3:7]))).double().cpu().numpy()
        rel_euler = release_matrix_to_euler(quaternion_to_matrix(self._wxyz(out[:, 3:7]))).double().cpu().numpy()
        rel_pos = out[:, :3].double().cpu().numpy()
        openness = out[:, 7].double().cpu().numpy()
        if self.config.relative:
            positions, eulers = position + rel_pos, euler + rel_euler
        else:
            positions, eulers = rel_pos, rel_euler
        return {"positions": positions, "euler": eulers, "openness": openness,
                "gripper": np.where(openness >= 0.5, 1.0, -1.0)}

    # --- the release's checkpoints --------------------------------------------------------------------

    def load_released_state_dict(self, weights: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Loads a release checkpoint's `weight` dict strictly: `module.` (DDP) prefixes are removed, and
        every missing, unexpected or misshapen tensor is named in one CheckpointError."""
        from .checkpoint import load_state_checked

        stripped = {k[len("module."):] if k.startswith("module.") else k: v for k, v in weights.items()}
        load_state_checked(self, stripped, source)
