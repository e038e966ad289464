"""What the <ACT> latent carries (the OpenHelix paper's Figure 5 analysis): read the hidden state at
<ACT> through the language model's head (top words, and the distribution over spatial words), and measure
how far the goal latent moves across frames of one scene versus across instructions on one image.
`openhelix latent-probe` (openhelix_ros) drives it on a CALVIN-D scene."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

SPATIAL_WORDS = ("left", "right", "forward", "backward", "up", "down", "front", "back", "top", "bottom")


@dataclass
class ProbeFrame:
    """One probe: the projected goal latent, the hidden state at <ACT>, the head's top words with their
    probabilities, and the probability of each spatial word renormalised over the spatial words."""

    step: int
    latent: np.ndarray
    act_hidden: np.ndarray
    top_words: list[tuple[str, float]] = field(default_factory=list)
    spatial: dict[str, float] = field(default_factory=dict)


def _word_ids(system2, words) -> dict[str, int]:
    """The first token of " word" per word (a word split into several tokens is read by its first)."""
    ids = {}
    for w in words:
        toks = system2.tokenizer(" " + w, add_special_tokens=False)["input_ids"]
        toks = [t for t in toks if t < system2.vocab_size]
        if toks:
            ids[w] = toks[0]
    return ids


def read_act(system2, image, instruction: str) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(latent, hidden state at <ACT>, probabilities of the LM head over the vocabulary) for one input."""
    was_training = system2.training
    system2.eval()
    try:
        with torch.inference_mode():
            px = system2.preprocess_images(image) if system2.config.use_image else None
            out = system2(px, [instruction], use_prefix_cache=True)
            hidden = out["act_hidden"][0]
            logits = system2.mllm.lm_head(hidden.to(system2.mllm.lm_head.weight.dtype)).float()
            probs = torch.softmax(logits[: system2.vocab_size], dim=-1)
    finally:
        if was_training:
            system2.train()
    return out["latent"][0].float().cpu().numpy(), hidden.float().cpu().numpy(), probs.cpu()


def probe_frames(system2, images, instruction: str, steps=None, top_k: int = 10,
                 spatial_words=SPATIAL_WORDS) -> list[ProbeFrame]:
    """One ProbeFrame per image (steps label them; default 0, 1, ...)."""
    steps = list(range(len(images))) if steps is None else list(steps)
    if len(steps) != len(images):
        raise ValueError(f"{len(images)} images but {len(steps)} steps")
    word_ids = _word_ids(system2, spatial_words)
    frames = []
    for step, image in zip(steps, images, strict=True):
        latent, hidden, probs = read_act(system2, image, instruction)
        top = torch.topk(probs, min(top_k, probs.numel()))
        words = [(system2.tokenizer.decode([int(i)]).strip(), round(float(p), 6))
                 for p, i in zip(top.values, top.indices, strict=True)]
        sp = {w: float(probs[i]) for w, i in word_ids.items()}
        total = sum(sp.values())
        spatial = {w: (v / total if total > 0 else 0.0) for w, v in sp.items()}
        frames.append(ProbeFrame(step=int(step), latent=latent, act_hidden=hidden, top_words=words, spatial=spatial))
    return frames


def _mean_pairwise(x: np.ndarray) -> float:
    if len(x) < 2:
        return 0.0
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return float(d[np.triu_indices(len(x), 1)].mean())


def latent_sensitivity(system2, frame_latents, image, instructions) -> dict:
    """How far the latent moves over frames (one instruction) compared with over instructions (one
    image): mean pairwise L2 distances and their ratio (near 0: the latent ignores the scene), plus the
    cosine similarity of each frame's latent to the first frame's."""
    frames = np.stack([np.asarray(x, np.float64) for x in frame_latents])
    across = np.stack([read_act(system2, image, text)[0].astype(np.float64) for text in instructions])
    scene, instr = _mean_pairwise(frames), _mean_pairwise(across)
    first = frames[0] / max(np.linalg.norm(frames[0]), 1e-12)
    cos = [float(f @ first / max(np.linalg.norm(f), 1e-12)) for f in frames]
    return {"scene_distance": scene, "instruction_distance": instr,
            "scene_to_instruction_ratio": scene / instr if instr > 0 else float("inf"),
            "cosine_to_first_frame": cos}
