"""System 2's ROS-free core (system2/core.py) with the tiny model: which lockstep images are encoded,
deterministic latents, input checks, checkpoint loading."""

from __future__ import annotations

import time

import numpy as np
import pytest

from openhelix_ros.system2.core import (
    LockstepImages,
    System2Core,
    check_image,
    check_instruction,
)

STEP_NS = 1_000_000_000 / 30


def step_stamp(step: int) -> int:
    return int(round(step * STEP_NS))


# ----- Asy(N) ---------------------------------------------------------------------------------------


def image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def test_lockstep_images_are_those_of_each_period_start_each_once_per_instruction():
    images = LockstepImages(3)
    for step in range(7):
        assert images.offer(step_stamp(step), step, image(step), 0.0) == []
    assert len(images) == 3  # steps 0, 3, 6
    assert [images.pop(1).step for _ in range(3)] == [0, 3, 6] and images.pop(1) is None
    # The bridge re-sends step 6 while it waits: already encoded for instruction 1, so not again ...
    images.offer(step_stamp(6), 6, image(6), 1.0)
    images.offer(step_stamp(6), 6, image(6), 2.0)  # ... and queued once, however often it comes
    assert len(images) == 1 and images.pop(1) is None
    # ... but a new instruction on the same observation gets its own latent.
    images.offer(step_stamp(6), 6, image(6), 3.0)
    assert images.pop(2).step == 6


def test_a_period_whose_own_image_never_came_is_encoded_from_its_first_image_that_does():
    images = LockstepImages(10)
    # System 2 came up while the bridge held step 3 (and re-sent it): step 0 never arrives.
    notes = images.offer(step_stamp(3), 3, image(3), 0.0)
    assert len(notes) == 1 and "step 0 never arrived" in notes[0] and "not exact" in notes[0]
    assert images.offer(step_stamp(3), 3, image(3), 1.0) == []  # the re-send: no second stand-in
    for step in range(4, 10):
        images.offer(step_stamp(step), step, image(step), 0.0)
    stand_in = images.pop(1)
    assert stand_in.step == 3 and stand_in.stand_in and images.pop(1) is None
    images.offer(step_stamp(10), 10, image(10), 0.0)  # the next period starts normally
    following = images.pop(1)
    assert following.step == 10 and not following.stand_in


def test_a_reset_starts_a_new_episode_whose_step_0_is_encoded_again():
    images = LockstepImages(10)
    images.offer(step_stamp(0), 0, image(0), 0.0)
    assert images.pop(1).step == 0
    images.offer(step_stamp(4), 4, image(4), 0.0)  # inside period 0: nothing to encode
    assert images.pop(1) is None
    images.offer(step_stamp(0), 0, image(7), 0.0)  # reset: same stamp, another scene
    assert images.pop(1).step == 0
    images.offer(step_stamp(0), 0, image(7), 0.0)  # reset to the very same scene: the latent is the same
    assert images.pop(1) is None


def test_a_new_episode_showing_the_old_ones_first_image_is_encoded_again():
    """A restarted bridge (or a reset to the same seed) begins with exactly the first image of the episode
    before, at the same stamp and under the same instruction: it still needs its own latent."""
    images = LockstepImages(10)
    images.offer(step_stamp(0), 0, image(1), 0.0)
    assert images.pop(1).step == 0
    images.offer(step_stamp(10), 10, image(2), 0.0)
    assert images.pop(1).step == 10
    images.offer(step_stamp(0), 0, image(1), 0.0)  # the step goes back: a new episode, the same picture
    assert images.episode == 1
    again = images.pop(1)
    assert again is not None and again.step == 0


def test_a_reset_to_step_0_drops_the_startup_image_still_waiting_for_an_instruction():
    """The bridge publishes its first scene at step 0, then the evaluator resets it (step 0 again, another
    scene) before any instruction: only the reset's image may be encoded, in a new episode."""
    images = LockstepImages(10)
    images.offer(step_stamp(0), 0, image(1), 0.0)  # the scene the bridge started with
    assert images.episode == 0 and len(images) == 1
    images.offer(step_stamp(0), 0, image(1), 0.5)  # its re-send: the same episode, queued once
    assert images.episode == 0 and len(images) == 1
    images.offer(step_stamp(0), 0, image(2), 1.0)  # the reset's scene
    assert images.episode == 1 and len(images) == 1
    first = images.pop(1)
    assert first.step == 0 and int(first.rgb[0, 0, 0]) == 2 and images.pop(1) is None
    images.offer(step_stamp(5), 5, image(5), 2.0)
    images.offer(step_stamp(0), 0, image(3), 3.0)  # the next reset: the step goes back
    assert images.episode == 2


def test_lockstep_images_drop_the_oldest_when_far_behind_and_say_so():
    images = LockstepImages(0, capacity=2)
    images.offer(step_stamp(0), 0, image(0), 0.0)
    images.offer(step_stamp(1), 1, image(1), 0.0)
    notes = images.offer(step_stamp(2), 2, image(2), 0.0)
    assert notes and "2 images behind" in notes[0] and "step 0" in notes[0]
    assert [images.pop(1).step, images.pop(1).step] == [1, 2]


@pytest.fixture(scope="module")
def system2():
    return System2Core.load("tiny")


def test_system2_encodes_a_deterministic_latent(system2):
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    first = system2.encode(image, "open the drawer")
    again = system2.encode(image, "  open the drawer ")
    other = system2.encode(image, "push the red block left")
    assert first.goal.tokens.shape == (1, system2.latent_dim) == (1, 32)  # one <ACT> token
    assert first.goal.coarse is None
    assert np.all(np.isfinite(first.goal.tokens)) and first.inference_time > 0
    np.testing.assert_array_equal(first.goal.tokens, again.goal.tokens)
    assert first.instruction == "open the drawer"
    assert not np.allclose(first.goal.tokens, other.goal.tokens)
    rgba = np.concatenate([image, np.full((48, 64, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(system2.encode(rgba, "open the drawer").goal.tokens, first.goal.tokens)


def test_system2_refuses_bad_inputs_clearly(system2):
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="instruction is empty"):
        system2.encode(image, "   ")
    with pytest.raises(ValueError, match=r"HxWx3 RGB image, got shape \(32, 32\)"):
        system2.encode(np.zeros((32, 32), np.uint8), "open the drawer")
    with pytest.raises(ValueError, match="8-bit RGB"):
        check_image(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="too small"):
        check_image(np.zeros((1, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="must be a string"):
        check_instruction(None)
    # What rclpy makes of bytes that are not UTF-8 (the fuzzer sends them): refused, not encoded as a task.
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(2 undecodable character\(s\)"):
        check_instruction(b"open \xff\xfe drawer".decode("utf-8", errors="replace"))
    assert check_instruction("  öffne die Schublade \U0001f916 ") == "öffne die Schublade \U0001f916"
    # Bounded before any tokenisation, and in tokens by the model: nothing long reaches the network.
    started = time.perf_counter()
    with pytest.raises(ValueError, match="has 100000 characters, more than the limit of 1000"):
        system2.encode(image, "x" * 100_000)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ValueError, match="tokens long, more than max_instruction_tokens=128"):
        system2.encode(image, "open the drawer " * 60)
    # The node checks both when an instruction arrives, so a refused one never reaches its worker.
    with pytest.raises(ValueError, match="tokens long"):
        system2.check_instruction("open the drawer " * 60)
    assert system2.check_instruction("  open the drawer ") == "open the drawer"
    with pytest.raises(ValueError, match="unknown System 2 configuration 'huge'"):
        System2Core.load("huge")
    with pytest.raises(ValueError, match="does not exist"):
        System2Core.load(checkpoint="/nonexistent/run")


def test_system2_loads_a_checkpoint_directory(system2, tmp_path):
    system2.model.save_pretrained(tmp_path / "system2")
    loaded = System2Core.load(checkpoint=str(tmp_path))  # a training-checkpoint layout: system2/ inside
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.encode(image, "lift the red block").goal.tokens,
                               system2.encode(image, "lift the red block").goal.tokens, atol=1e-6)
    assert loaded.model_id == str(tmp_path)


def test_system2_sends_the_token_matrix_and_coarse_actions_its_latent_forms(tmp_path):
    from openhelix_training import System2

    System2.from_config("tiny", latent={"act_tokens": 3, "coarse_actions": 5}).save_pretrained(tmp_path / "s2")
    core = System2Core.load(checkpoint=str(tmp_path / "s2"))
    result = core.encode(np.zeros((32, 32, 3), np.uint8), "open the drawer")
    assert result.goal.tokens.shape == (3, 32) and len(result.goal.coarse) == 5
    assert core.describe_latent() == "act_tokens: 3, 5 coarse actions"
    assert System2Core.load("tiny").describe_latent() == "act"


def test_system2_says_what_it_sees_with(tmp_path):
    from openhelix_training import System2
    from openhelix_training.vision_pretraining import export_vision_weights

    assert System2Core.load("tiny").describe_vision() == "a seeded random vision tower"
    weights = export_vision_weights(System2.from_config("tiny"), tmp_path / "v.safetensors", {})
    System2.from_config("tiny", vision_weights=str(weights)).save_pretrained(tmp_path / "s2")
    assert System2Core.load(checkpoint=str(tmp_path / "s2")).describe_vision() == f"vision weights {weights}"
    System2.from_config("tiny", use_image=False).save_pretrained(tmp_path / "text")
    assert System2Core.load(checkpoint=str(tmp_path / "text")).describe_vision() == "no image (text only)"


# ----- System 1 -------------------------------------------------------------------------------------


