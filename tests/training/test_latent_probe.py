"""The latent probe (the paper's Figure 5 analysis) on the tiny System 2."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_training import System2
from openhelix_training.latent_probe import latent_sensitivity, probe_frames


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]


def test_probe_reads_words_and_spatial_distribution(images):
    system2 = System2.from_config("tiny")
    frames = probe_frames(system2, images, "push the blue block to the left", steps=[0, 5, 10], top_k=4)
    assert [f.step for f in frames] == [0, 5, 10]
    for frame in frames:
        probabilities = [p for _, p in frame.top_words]
        assert len(probabilities) == 4 and probabilities == sorted(probabilities, reverse=True)
        assert sum(frame.spatial.values()) == pytest.approx(1.0, abs=1e-5)
        assert frame.latent.shape == (system2.config.latent_dim,)
    # the same frame read twice gives the same latent (inference is deterministic)
    again = probe_frames(system2, images[:1], "push the blue block to the left")
    np.testing.assert_array_equal(again[0].latent, frames[0].latent)


def test_a_text_only_system2_is_blind_to_the_scene(images):
    # The metric's anchor: without the image the latent cannot move across frames, only across
    # instructions, so the scene/instruction ratio is exactly 0.
    system2 = System2.from_config("tiny", use_image=False)
    frames = probe_frames(system2, images, "open the drawer")
    result = latent_sensitivity(system2, [f.latent for f in frames], images[0],
                                ["open the drawer", "turn on the light bulb", "push the slider left"])
    assert result["scene_distance"] == 0.0
    assert result["instruction_distance"] > 0.0
    assert result["scene_to_instruction_ratio"] == 0.0
    assert result["cosine_to_first_frame"] == pytest.approx([1.0, 1.0, 1.0])


def test_sensitivity_needs_two_frames_and_two_instructions(images):
    system2 = System2.from_config("tiny")
    with pytest.raises(ValueError, match="at least two"):
        latent_sensitivity(system2, [np.zeros(4)], images[0], ["a", "b"])
