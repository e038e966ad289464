"""Configuration of System 1 `3dda`: 3D Diffuser Actor's CALVIN model, exactly as released.

The fields are the constructor arguments of the released `DiffuserActor` (nickgkan/3d_diffuser_actor,
`diffuser_actor/trajectory_optimization/diffuser_actor.py`) with the values its CALVIN scripts pass
(shared/FACTS.md, "Checkpoint formats"), plus the CLIP ModifiedResNet widths that the released code takes
from `clip.load("RN50")`. Every preset but the toy one has the released tensor names *and* shapes
(shared/ref/3dda_calvin_*.keys.tsv).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

# tasks/calvin_rel_traj_location_bounds_task_ABC_D.json of the release: the gripper-relative trajectory
# bounds of each CALVIN scene. The CALVIN evaluation passes all four scenes, so the released code takes
# their union and widens it by --gripper_loc_bounds_buffer 0.01.
CALVIN_RELATIVE_BOUNDS_ABC_D = {
    "A": ((-0.2691913843154907, -0.21995729207992554, -0.182277649641037),
          (0.35127854347229004, 0.2769763469696045, 0.17159393429756165)),
    "B": ((-0.2576896846294403, -0.22244493663311005, -0.20557966828346252),
          (0.32854634523391724, 0.2922680974006653, 0.17373555898666382)),
    "C": ((-0.29205888509750366, -0.24688798189163208, -0.17577645182609558),
          (0.25053921341896057, 0.3277084231376648, 0.16431939601898193)),
    "D": ((-0.25131964683532715, -0.15233077108860016, -0.13294968008995056),
          (0.19209328293800354, 0.19344553351402283, 0.1370421051979065)),
}
CALVIN_BOUNDS_BUFFER = 0.01


def calvin_location_bounds(scenes: str = "ABCD", buffer: float = CALVIN_BOUNDS_BUFFER) -> tuple[tuple, tuple]:
    """The union of the release's per-scene relative bounds over `scenes`, widened by `buffer`."""
    lows = np.array([CALVIN_RELATIVE_BOUNDS_ABC_D[s][0] for s in scenes])
    highs = np.array([CALVIN_RELATIVE_BOUNDS_ABC_D[s][1] for s in scenes])
    return tuple((lows.min(0) - buffer).tolist()), tuple((highs.max(0) + buffer).tolist())


@dataclass
class DiffuserActorConfig:
    """3D Diffuser Actor on CALVIN. Presets:

    - `3dda`: `diffuser_actor_calvin_nohistory.pth` (one proprioception frame, 16 CLIP text tokens);
    - `3dda-nhist3`: `diffuser_actor_calvin.pth` (three proprioception frames);
    - `openhelix-policy`: OpenHelix's `policy.pth` (the `3dda` network reading one `<ACT>` latent);
    - `tiny-3dda`: the same module tree at toy widths, for tests (no released checkpoint has it).

    instruction_length is what the released models read: 16 CLIP ViT-B/32 text tokens (3D Diffuser Actor)
    or OpenHelix's single `<ACT>` latent (1). The network accepts any length; the field fixes what a
    caller must supply, so that a latent of the wrong shape is refused by name.
    """

    embedding_dim: int = 192
    num_attn_heads: int = 8
    nhist: int = 1
    num_vis_ins_attn_layers: int = 2
    fps_subsampling_factor: int = 3
    instruction_dim: int = 512
    instruction_length: int = 16
    # CLIP ModifiedResNet-50: blocks per stage, stem width (the stem's first convs have width // 2),
    # attention-pool heads and output width, input resolution (sets attnpool's positional table)
    backbone_layers: tuple[int, ...] = (3, 4, 6, 3)
    backbone_width: int = 64
    backbone_heads: int = 32
    backbone_output_dim: int = 1024
    backbone_input_resolution: int = 224
    # CALVIN data: two cameras, each 200x200 (the gripper camera's 84x84 resized to it), cropped to 160
    camera_names: tuple[str, ...] = ("static", "gripper")
    camera_resolution: int = 200
    crop: int = 20
    # gripper-relative point cloud and trajectory, normalised to [-1, 1] with these bounds
    relative: bool = True
    location_bounds: tuple[tuple[float, ...], tuple[float, ...]] = dataclasses.field(
        default_factory=lambda: calvin_location_bounds())
    quaternion_format: str = "wxyz"  # of the proprioception and predicted rotations (the release's README: wxyz)
    # trajectory: interpolation_length 20 in the release, whose first waypoint (the current pose) is dropped
    trajectory_length: int = 19
    # diffusion: 25 DDPM steps in training and, in the release, at inference; "ddim" samples with fewer
    diffusion_timesteps: int = 25
    inference_scheduler: str = "ddpm"
    num_inference_steps: int = 25
    # The release's denoiser cross-attends its language tokens with batch-first tokens handed to a
    # sequence-first attention. With one sample (its CALVIN evaluation) or one token (OpenHelix's latent)
    # that is plain attention; with B > 1 samples of L > 1 tokens every sample attends to a mix of the
    # batch's tokens, and the released checkpoints were trained so (batch 30). True reproduces it, so
    # that batched outputs and training match the release; False gives each sample its own tokens.
    release_language_batch_mixing: bool = True
    # losses (the release): 30 * L1 position noise + 10 * L1 rotation noise + BCE openness
    position_loss_weight: float = 30.0
    rotation_loss_weight: float = 10.0

    def validate(self) -> None:
        c, h = self.embedding_dim, self.num_attn_heads
        if c % h:
            raise ValueError(f"embedding_dim {c} must be divisible by num_attn_heads {h}")
        if c % 6:
            raise ValueError(f"embedding_dim {c} must be divisible by 6: the 3D rotary encoding turns one "
                             "third of the channels with each axis, in pairs")
        if self.quaternion_format not in ("wxyz", "xyzw"):
            raise ValueError(f"quaternion_format must be 'wxyz' or 'xyzw', got {self.quaternion_format!r}")
        if self.inference_scheduler not in ("ddpm", "ddim"):
            raise ValueError(f"inference_scheduler must be 'ddpm' or 'ddim', got {self.inference_scheduler!r}")
        if not 1 <= self.num_inference_steps <= self.diffusion_timesteps:
            raise ValueError(f"num_inference_steps must be in 1..{self.diffusion_timesteps} (diffusion_timesteps), "
                             f"got {self.num_inference_steps}")
        if self.inference_scheduler == "ddpm" and self.num_inference_steps != self.diffusion_timesteps:
            raise ValueError("the DDPM sampler runs all diffusion_timesteps steps, as the release does; "
                             "choose inference_scheduler='ddim' for fewer")
        if len(self.backbone_layers) != 4:
            raise ValueError(f"backbone_layers must give 4 stages, got {self.backbone_layers}")
        lo, hi = (np.asarray(b, dtype=float) for b in self.location_bounds)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(hi > lo):
            raise ValueError(f"location_bounds must be ((3 lows), (3 highs)) with highs > lows, got {self.location_bounds}")
        if self.crop < 0 or self.camera_resolution - 2 * self.crop < 32:
            raise ValueError(f"crop {self.crop} leaves less than 32 px of {self.camera_resolution}")

    @property
    def latent_dim(self) -> int:
        """Floats of the goal latent this policy reads: instruction_length tokens of instruction_dim."""
        return self.instruction_length * self.instruction_dim

    @property
    def image_size(self) -> int:
        """Side of the cropped image the network sees (160 on CALVIN: 20 x 20 stride-8 features)."""
        return self.camera_resolution - 2 * self.crop

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DiffuserActorConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown DiffuserActorConfig fields: {sorted(unknown)} (known: {sorted(names)})")
        data = dict(data)
        for key in ("backbone_layers", "camera_names"):
            if key in data:
                data[key] = tuple(data[key])
        if "location_bounds" in data:
            data["location_bounds"] = tuple(tuple(float(v) for v in b) for b in data["location_bounds"])
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> DiffuserActorConfig:
        presets = {
            "3dda": {},
            "3dda-nhist3": dict(nhist=3),
            # OpenHelix's policy.pth: the nohistory network reading one <ACT> latent per instruction
            "openhelix-policy": dict(instruction_length=1),
            "tiny-3dda": dict(
                # the released stage depths, so that the tensor names are the release's exactly
                embedding_dim=24, num_attn_heads=2, backbone_width=8,
                backbone_heads=2, backbone_output_dim=16, backbone_input_resolution=64,
                camera_resolution=64, crop=8, trajectory_length=6, diffusion_timesteps=10,
                num_inference_steps=10, instruction_length=2,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown 3D Diffuser Actor preset {name!r}; choose from {sorted(presets)}")
        cfg = cls.from_dict({**presets[name], **overrides})
        cfg.validate()
        return cfg
