"""What does the <ACT> latent carry? The analysis of the OpenHelix paper's Figure 5, as a library.

The paper reads the hidden state at <ACT> through the language model's own output head: the words it is
closest to, and how its probability splits between spatial words ("left", "right", ...), frame by frame
while a block moves. Its finding: the latent summarises the instruction and barely follows the scene.
This module measures the same for any System 2 (a configuration or a trained checkpoint), plus one
number the figure only suggests: how much the latent moves across frames compared with how much it moves
across instructions (``scene_to_instruction_ratio``; near 0 means the image is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

SPATIAL_WORDS = ("left", "right", "up", "down", "forward", "backward", "front", "behind")


@dataclass
class FrameProbe:
    """The reading of one frame: top words with their probabilities, the distribution over the spatial
    words (renormalised among them), and the goal latent itself."""

    step: int
    top_words: list[tuple[str, float]]
    spatial: dict[str, float]
    latent: np.ndarray = field(repr=False)


def _word_token_ids(tokenizer, words: tuple[str, ...]) -> dict[str, int]:
    """The first token of each word as it appears mid-sentence (with a leading space)."""
    ids = {}
    for word in words:
        tokens = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if tokens:
            ids[word] = tokens[0]
    return ids


def _token_text(tokenizer, token_id: int) -> str:
    text = tokenizer.decode([token_id])
    return text.strip() or repr(text)  # whitespace tokens (newline, space) shown as '\\n', ' '



@torch.inference_mode()
def probe_frames(system2, images: list[np.ndarray], instruction: str, steps: list[int] | None = None,
                 top_k: int = 10, spatial_words: tuple[str, ...] = SPATIAL_WORDS) -> list[FrameProbe]:
    """Read the <ACT> hidden state of each (image, instruction) through the LM head."""
    system2.eval()
    lm_head = system2.mllm.lm_head
    vocabulary = min(system2.vocab_size, lm_head.weight.shape[0])
    spatial_ids = _word_token_ids(system2.tokenizer, spatial_words)
    spatial_ids = {w: i for w, i in spatial_ids.items() if i < vocabulary}
    frames = []
    for index, image in enumerate(images):
        pixels = system2.preprocess_images(image) if system2.config.use_image else None
        out = system2.forward(pixels, [instruction])
        hidden = out["act_hidden"][0].to(lm_head.weight.dtype)
        logits = lm_head(hidden).float()[:vocabulary]
        probabilities = torch.softmax(logits, dim=-1)
        top = torch.topk(probabilities, k=min(top_k, vocabulary))
        spatial_logits = torch.tensor([logits[i] for i in spatial_ids.values()])
        spatial = torch.softmax(spatial_logits, dim=-1).tolist() if len(spatial_ids) else []
        frames.append(FrameProbe(
            step=steps[index] if steps else index,
            top_words=[(_token_text(system2.tokenizer, int(i)), float(p)) for p, i in zip(top.values, top.indices, strict=True)],
            spatial=dict(zip(spatial_ids, spatial, strict=True)),
            latent=out["latent"][0].float().cpu().numpy()))
    return frames


@torch.inference_mode()
def latent_sensitivity(system2, frame_latents: list[np.ndarray], image: np.ndarray,
                       instructions: list[str]) -> dict:
    """How far the latent moves across frames (same instruction) versus across instructions (same
    image). Distances are mean pairwise L2; cosine similarities are to the first frame."""
    if len(frame_latents) < 2 or len(instructions) < 2:
        raise ValueError("need at least two frames and two instructions")
    frames = np.stack(frame_latents)
    across = np.stack([system2.encode(image, text).numpy() for text in instructions])

    def mean_pairwise(x: np.ndarray) -> float:
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return float(d[np.triu_indices(len(x), 1)].mean())

    first = frames[0] / (np.linalg.norm(frames[0]) + 1e-12)
    cosine = (frames @ first) / (np.linalg.norm(frames, axis=1) + 1e-12)
    scene, language = mean_pairwise(frames), mean_pairwise(across)
    return {"scene_distance": scene, "instruction_distance": language,
            "scene_to_instruction_ratio": scene / language if language > 0 else float("inf"),
            "cosine_to_first_frame": cosine.tolist()}
