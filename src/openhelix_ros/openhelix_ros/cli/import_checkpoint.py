"""``openhelix import-checkpoint``: released 3D Diffuser Actor / OpenHelix weights into this project's
checkpoint layout (safetensors + config.json), which every node and command loads like its own.

    openhelix import-checkpoint 3dda diffuser_actor_calvin_nohistory.pth --out checkpoints/3dda
    openhelix import-checkpoint 3dda diffuser_actor_calvin.pth --out checkpoints/3dda-nhist3
    openhelix import-checkpoint openhelix-policy policy.pth --out checkpoints/openhelix/system1

The history length (nhist 1 or 3) is read from the weights. Loading is strict and loud: a file that does
not hold exactly the released tensors fails naming every missing, unexpected or misshapen one, and
nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from openhelix_training.import_checkpoint import RELEASE_KINDS  # light: no model is built here

    parser.add_argument("kind", choices=sorted(RELEASE_KINDS),
                        help="3dda: a 3D Diffuser Actor CALVIN checkpoint (reads 16 CLIP text tokens); "
                             "openhelix-policy: OpenHelix's policy.pth (reads the one <ACT> latent)")
    parser.add_argument("file", type=Path, help="the released .pth file")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write (must not exist)")
    parser.add_argument("--ddim-steps", type=int, default=0,
                        help="sample with DDIM in this many steps instead of the release's 25 DDPM steps "
                             "(0: as released)")


def run(args: argparse.Namespace) -> int:
    from openhelix_training.checkpoint import CheckpointError
    from openhelix_training.import_checkpoint import load_release_policy

    if args.out.exists():
        print(f"openhelix import-checkpoint: {args.out} exists; choose a new directory", file=sys.stderr)
        return 2
    overrides = {"inference_scheduler": "ddim", "num_inference_steps": args.ddim_steps} if args.ddim_steps else {}
    try:
        model = load_release_policy(args.file, args.kind, **overrides)
    except (CheckpointError, ValueError) as error:
        print(f"openhelix import-checkpoint: {error}", file=sys.stderr)
        return 1
    model.save_pretrained(args.out)
    cfg = model.config
    tensors = len(model.state_dict())
    print(f"imported {args.file} ({args.kind}): {tensors} tensors loaded strictly; nhist {cfg.nhist}, "
          f"{cfg.instruction_length} instruction token(s) of {cfg.instruction_dim}, {cfg.trajectory_length} "
          f"waypoints, {cfg.inference_scheduler} x {cfg.num_inference_steps}")
    print(f"wrote {args.out}: load it with the system1 node's checkpoint parameter, or as system1/ of a "
          f"checkpoint directory beside a System 2 whose latents have {cfg.latent_dim} floats")
    return 0
