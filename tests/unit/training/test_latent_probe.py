"""The latent probe reads <ACT> through the LM head and compares scene and instruction sensitivity."""

import numpy as np
import pytest

from openhelix_training import System2
from openhelix_training.latent_probe import latent_sensitivity, probe_frames


@pytest.fixture(scope="module")
def tiny():
    return System2.from_config("tiny")


def test_probe_frames_and_sensitivity(tiny):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    frames = probe_frames(tiny, images, "lift the blue block", steps=[0, 6, 12], top_k=5)
    assert [f.step for f in frames] == [0, 6, 12]
    assert frames[0].latent.shape == (32,) and frames[0].act_hidden.shape == (64,)
    assert len(frames[0].top_words) == 5 and all(isinstance(w, str) for w, _ in frames[0].top_words)
    assert frames[0].spatial and abs(sum(frames[0].spatial.values()) - 1) < 1e-5
    result = latent_sensitivity(tiny, [f.latent for f in frames], images[0],
                                ["lift the blue block", "open the drawer", "turn on the lightbulb"])
    assert result["instruction_distance"] > 0 and np.isfinite(result["scene_to_instruction_ratio"])
    assert result["cosine_to_first_frame"][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="steps"):
        probe_frames(tiny, images, "x", steps=[0])
