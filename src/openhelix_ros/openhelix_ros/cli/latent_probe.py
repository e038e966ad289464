"""``openhelix latent-probe``: what the <ACT> goal latent carries, frame by frame, in a CALVIN-D scene.

The OpenHelix paper's Figure 5 experiment on the embedded play table: the target block of a grasp task
moves (CALVIN-D, left by default) while the arm holds still; at every probe the static camera image and
the task's instruction go through System 2, and the hidden state at <ACT> is read through the language
model's head (top words, distribution over spatial words). The report adds how far the latent moves over
the frames compared with across instructions: the paper found the latent follows the instruction and
barely the scene. Results: runs/<name>/results.json, report.md and probe.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DEFAULT_TASK = "lift_blue_block_table"
CONTRAST_TASKS = ("open_drawer", "turn_on_lightbulb", "move_slider_left", "rotate_red_block_right")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="embedded", help="System 2 configuration (tiny, embedded, llava-1.5-7b)")
    parser.add_argument("--checkpoint", default="", help="a trained checkpoint directory instead of --model")
    parser.add_argument("--vision-weights", default=None,
                        help="with --model: System 2's vision weights (a shipped name such as playtable-v1, a "
                             ".safetensors path, or '' for the seeded random tower); default: the preset's")
    parser.add_argument("--task", default=DEFAULT_TASK, help="grasp-related CALVIN task whose block moves")
    parser.add_argument("--dynamic", default="left", choices=["left", "forward", "diagonal", "circle"])
    parser.add_argument("--frames", type=int, default=8, help="number of probes")
    parser.add_argument("--every", type=int, default=6, help="env steps between probes (30 Hz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/latent-probe", help="output folder")


def _load_system2(args: argparse.Namespace):
    from openhelix_training import System2, load_checkpoint

    if args.checkpoint:
        if args.vision_weights is not None:
            raise SystemExit("openhelix latent-probe: --vision-weights goes with --model; a checkpoint's System 2 "
                             "keeps the vision weights it was trained with")
        loaded = load_checkpoint(args.checkpoint)
        if getattr(loaded, "system2", None) is None:
            raise SystemExit(f"openhelix latent-probe: {args.checkpoint} holds no System 2")
        return loaded.system2, f"checkpoint {args.checkpoint}"
    if args.vision_weights is None:
        model = System2.from_config(args.model)
    else:
        model = System2.from_config(args.model, vision_weights=args.vision_weights)
    weights = model.config.vision_weights or "seeded random"
    return model, f"configuration '{args.model}' (vision weights: {weights}; untrained <ACT> and projector)"


def _capture(args: argparse.Namespace) -> tuple[list[np.ndarray], list[int], list[list[float]]]:
    """Static-camera frames while the target block moves and the arm holds its pose."""
    from openhelix_ros.sim import make_env
    from openhelix_ros.sim.dynamic import DYNAMIC_TASKS
    from openhelix_ros.sim.scene import BLOCK_NAMES

    if args.task not in DYNAMIC_TASKS:
        raise SystemExit(f"openhelix latent-probe: {args.task!r} is not grasp-related, so no block moves; "
                         f"choose one of {', '.join(sorted(DYNAMIC_TASKS))}")
    env = make_env(dynamic=args.dynamic, seed=args.seed)
    try:
        obs = env.reset(seed=args.seed)
        env.begin_subtask(args.task)
        block = DYNAMIC_TASKS[args.task]
        offset = 6 + 6 * BLOCK_NAMES.index(block)  # scene_obs: 6 articulation values, then 6 per block
        images, steps, positions = [], [], []
        for frame in range(args.frames):
            images.append(obs["rgb_obs"]["rgb_static"].copy())
            steps.append(frame * args.every)
            positions.append(obs["scene_obs"][offset:offset + 3].round(4).tolist())
            hold = np.concatenate([obs["robot_obs"][:3], obs["robot_obs"][3:6], [1.0]])
            for _ in range(args.every):
                obs, *_ = env.step(hold)
        return images, steps, positions
    finally:
        env.close()


def _plot(path: Path, frames, sensitivity: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [f.step for f in frames]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for word in frames[0].spatial:
        left.plot(steps, [f.spatial[word] for f in frames], marker="o", label=word)
    left.set(title="spatial words read from <ACT>", xlabel="env step", ylabel="probability among spatial words")
    left.legend(fontsize=8, ncol=2)
    right.plot(steps, sensitivity["cosine_to_first_frame"], marker="o")
    right.set(title="latent vs first frame", xlabel="env step", ylabel="cosine similarity", ylim=(-1.05, 1.05))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from openhelix_ros.sim.language import evaluation_instruction
    from openhelix_training.latent_probe import latent_sensitivity, probe_frames

    if args.frames < 2:
        raise SystemExit("openhelix latent-probe: --frames must be at least 2")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[latent-probe] capturing {args.frames} frames of {args.task} with the block moving {args.dynamic}",
          flush=True)
    images, steps, positions = _capture(args)
    system2, source = _load_system2(args)
    instruction = evaluation_instruction(args.task)
    print(f"[latent-probe] reading <ACT> of System 2 {source} for {instruction!r}", flush=True)
    started = time.monotonic()
    frames = probe_frames(system2, images, instruction, steps=steps)
    contrast = [instruction] + [evaluation_instruction(t) for t in CONTRAST_TASKS if t != args.task]
    sensitivity = latent_sensitivity(system2, [f.latent for f in frames], images[0], contrast)
    results = {
        "system2": source, "task": args.task, "instruction": instruction, "dynamic": args.dynamic,
        "seconds": round(time.monotonic() - started, 2), "contrast_instructions": contrast,
        "sensitivity": sensitivity,
        "frames": [{"step": f.step, "block_position": p, "top_words": f.top_words, "spatial": f.spatial,
                    "latent_norm": float(np.linalg.norm(f.latent))} for f, p in zip(frames, positions, strict=True)],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _plot(out / "probe.png", frames, sensitivity)
    lines = [f"# Latent probe: {args.task}, block moving {args.dynamic}", "",
             f"System 2: {source}. Instruction: \"{instruction}\".", "",
             f"Latent distance across frames (same instruction): {sensitivity['scene_distance']:.4g}; across "
             f"{len(contrast)} instructions (same image): {sensitivity['instruction_distance']:.4g}; ratio "
             f"**{sensitivity['scene_to_instruction_ratio']:.3g}** (near 0: the latent ignores the scene).", "",
             "| step | block xyz (m) | top words | p(left) | p(right) |", "|---|---|---|---|---|"]
    for frame in results["frames"]:
        words = ", ".join(f"{w} ({p:.2f})" for w, p in frame["top_words"][:5])
        lines.append(f"| {frame['step']} | {frame['block_position']} | {words} | "
                     f"{frame['spatial'].get('left', float('nan')):.3f} | {frame['spatial'].get('right', float('nan')):.3f} |")
    lines += ["", "![spatial words and latent similarity](probe.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines[:6]))
    print(f"[latent-probe] wrote {out}/results.json, report.md, probe.png")
    return 0
