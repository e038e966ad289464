"""Release-format miniatures for graph tests: a tiny 3D Diffuser Actor policy.pth with the released tensor
names, imported with the project's importer."""

from __future__ import annotations

from pathlib import Path

import torch


def imported_policy(root: Path, out: Path, latent_dim: int) -> Path:
    """A tiny release-format policy.pth (DDP-prefixed, reading one latent of ``latent_dim``) under ``root``,
    imported to ``out`` (a System 1 directory)."""
    from openhelix_training import DiffuserActor
    from openhelix_training.configuration_diffuser_actor import DiffuserActorConfig
    from openhelix_training.import_checkpoint import import_release_policy

    tiny = DiffuserActorConfig.preset("tiny-3dda")
    widths = {f: getattr(tiny, f) for f in ("embedding_dim", "num_attn_heads", "backbone_width", "backbone_heads",
                                            "backbone_output_dim", "backbone_input_resolution", "camera_resolution",
                                            "crop", "trajectory_length", "diffusion_timesteps", "num_inference_steps")}
    torch.manual_seed(0)
    policy = DiffuserActor.from_config("tiny-3dda", instruction_length=1, instruction_dim=latent_dim)
    weights = {"module." + k: v for k, v in policy.state_dict().items()}
    torch.save({"weight": weights, "optimizer": {}, "iter": 1, "best_loss": None}, root / "policy.pth")
    import_release_policy(root / "policy.pth", out, "openhelix-policy", instruction_dim=latent_dim, **widths)
    return out
