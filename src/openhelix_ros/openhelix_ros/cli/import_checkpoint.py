"""``openhelix import-checkpoint``: released 3D Diffuser Actor / OpenHelix weights into this project's
checkpoint layout (safetensors + config.json), which every node and command loads like its own.

    openhelix import-checkpoint 3dda diffuser_actor_calvin_nohistory.pth --out checkpoints/3dda
    openhelix import-checkpoint 3dda diffuser_actor_calvin.pth --out checkpoints/3dda-nhist3
    openhelix import-checkpoint openhelix-policy policy.pth --out checkpoints/openhelix-policy
    openhelix import-checkpoint openhelix policy.pth --llm <merged pytorch_model.bin or shard directory> \
        --tokenizer <LLaVA-7B-Lightening-v1-1 directory> [--vision-tower <clip-vit-large-patch14>] \
        --out checkpoints/openhelix

`openhelix` writes both systems (system1/ and system2/), a checkpoint the whole graph loads
(`openhelix up sim checkpoint:=checkpoints/openhelix`). The history length (nhist 1 or 3) is read from the weights. Loading is strict and loud: a file that does
not hold exactly the released tensors fails naming every missing, unexpected or misshapen one, and
nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OPENHELIX = "openhelix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from openhelix_training.import_checkpoint import RELEASE_KINDS  # light: no model is built here

    parser.add_argument("kind", choices=sorted(RELEASE_KINDS) + [OPENHELIX],
                        help="3dda: a 3D Diffuser Actor CALVIN checkpoint (reads 16 CLIP text tokens); "
                             "openhelix-policy: OpenHelix's policy.pth (reads the one <ACT> latent); openhelix: "
                             "policy.pth plus OpenHelix's MLLM (--llm), both systems")
    parser.add_argument("file", type=Path, help="the released policy .pth file")
    parser.add_argument("--llm", type=Path, help="openhelix: the released MLLM weights (a directory of sharded "
                        "safetensors or .bin files, or a merged pytorch_model.bin)")
    parser.add_argument("--tokenizer", type=Path, help="openhelix: LLaVA's tokenizer directory "
                        "(default: --llm when that directory holds one)")
    parser.add_argument("--vision-tower", type=Path, help="openhelix: a local clip-vit-large-patch14 directory, "
                        "needed only when the MLLM weights lack the vision tower")
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
    if args.kind == OPENHELIX and args.llm is None:
        print("openhelix import-checkpoint openhelix: --llm is required (the released MLLM weights)", file=sys.stderr)
        return 2
    overrides = {"inference_scheduler": "ddim", "num_inference_steps": args.ddim_steps} if args.ddim_steps else {}
    try:
        model = load_release_policy(args.file, "openhelix-policy" if args.kind == OPENHELIX else args.kind,
                                    **overrides)
        mllm = None
        if args.kind == OPENHELIX:
            from openhelix_training.modeling_openhelix import load_openhelix_mllm

            mllm = load_openhelix_mllm(args.llm, args.vision_tower, args.tokenizer)
    except (CheckpointError, ValueError, OSError) as error:
        print(f"openhelix import-checkpoint: {error}", file=sys.stderr)
        return 1
    if mllm is not None:
        if mllm.config.latent_dim != model.config.latent_dim:
            print(f"openhelix import-checkpoint: the MLLM's latents have {mllm.config.latent_dim} floats, the "
                  f"policy reads {model.config.latent_dim}", file=sys.stderr)
            return 1
        from openhelix_training.checkpoint import SYSTEM1_DIR, SYSTEM2_DIR

        model.save_pretrained(args.out / SYSTEM1_DIR)
        mllm.save_pretrained(args.out / SYSTEM2_DIR)
        print(f"imported {args.llm}: the MLLM (vocabulary {mllm.config.vocab_size}, <ACT> id "
              f"{mllm.config.act_token_id}) into {args.out / SYSTEM2_DIR}")
    else:
        model.save_pretrained(args.out)
    cfg = model.config
    tensors = len(model.state_dict())
    print(f"imported {args.file} ({args.kind}): {tensors} tensors loaded strictly; nhist {cfg.nhist}, "
          f"{cfg.instruction_length} instruction token(s) of {cfg.instruction_dim}, {cfg.trajectory_length} "
          f"waypoints, {cfg.inference_scheduler} x {cfg.num_inference_steps}")
    if mllm is not None:
        print(f"wrote {args.out}: openhelix up sim checkpoint:={args.out}")
    else:
        print(f"wrote {args.out}: load it with the system1 node's checkpoint parameter, or as system1/ of a "
              f"checkpoint directory beside a System 2 whose latents have {cfg.latent_dim} floats")
    return 0
