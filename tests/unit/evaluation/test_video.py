"""Episode videos (evaluation/video.py): frames with their captions and the projected trajectory, and
MP4s written in the background that ffmpeg reads back frame for frame."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.evaluation.video import (
    BAR,
    CLOSED,
    OPEN,
    Caption,
    Projection,
    VideoWriter,
    annotate,
)

K = np.array([[100.0, 0.0, 100.0], [0.0, 100.0, 100.0], [0.0, 0.0, 1.0]])


def looking_down(height: float = 1.0) -> np.ndarray:
    """A camera ``height`` m above the origin looking straight down (optical z = world -z, x = world x)."""
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])
    pose[2, 3] = height
    return pose


def test_projection_puts_the_optical_axis_at_the_principal_point_and_drops_what_is_behind():
    camera = Projection(K, looking_down())
    uv, front = camera.pixels(np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.5], [0.0, 0.0, 2.0]]))
    np.testing.assert_allclose(uv[:3], [[100, 100], [110, 100], [100, 80]])
    assert front.tolist() == [True, True, True, False]


def test_a_frame_is_scaled_padded_and_carries_caption_marks_and_the_trajectory_in_gripper_colours():
    rgb = np.full((200, 200, 3), 90, np.uint8)
    caption = Caption(chain=1, chains=5, subtask=2, task="open_drawer", instruction="pull the handle to open the "
                      "drawer", marks=[True, False, None, None, None], step=57, latent_age_steps=12,
                      latent_period_steps=10)
    trajectory = np.array([[x, 0.0, 0.0] for x in np.linspace(-0.3, 0.3, 7)])
    gripper = np.array([1, 1, 1, -1, -1, -1, -1])
    frame = annotate(rgb, caption, trajectory, gripper, Projection(K, looking_down()))
    assert frame.shape == (480, 400, 3) and frame.dtype == np.uint8  # 2x, plus 2 bars, padded to 16
    image = frame[BAR:BAR + 400]
    assert (np.abs(image.astype(int) - OPEN).sum(axis=2) < 30).sum() > 20  # the open part, green
    assert (np.abs(image.astype(int) - CLOSED).sum(axis=2) < 30).sum() > 20  # the closed part, red
    # The trajectory lies on the image's middle row (y = 0) from u = 70 to 130 (140 to 260 scaled up):
    # its first three waypoints open, the rest closed.
    middle = frame[BAR + 200]
    assert tuple(middle[165]) == OPEN and tuple(middle[250]) == CLOSED and tuple(middle[100]) == (90, 90, 90)
    assert frame[:BAR].max() > 200 and frame[BAR + 400:].max() > 200  # text above, marks below
    plain = annotate(rgb, caption)
    assert not np.array_equal(plain[BAR:BAR + 400], image)  # no projection: no trajectory drawn
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        annotate(np.zeros((4, 4)), caption)


def test_videos_are_written_in_the_background_and_read_back_frame_for_frame(tmp_path):
    import imageio_ffmpeg

    writer = VideoWriter(tmp_path / "videos" / "chain_000.mp4")
    for step in range(45):
        rgb = np.zeros((200, 200, 3), np.uint8)
        rgb[:, : 4 * step] = 200  # a bar that grows: frames differ
        assert writer.add(rgb, Caption(0, 1, 0, "open_drawer", "open the drawer", [None], step=step))
    summary = writer.close()
    assert summary.error == "" and summary.frames == 45 and summary.dropped == 0
    reader = imageio_ffmpeg.read_frames(str(summary.path))
    meta = next(reader)
    assert meta["size"] == (400, 480) and meta["fps"] == 30
    frames = [np.frombuffer(f, np.uint8).reshape(480, 400, 3) for f in reader]
    assert len(frames) == 45
    assert frames[40][BAR + 100, 300].mean() > 150 > frames[10][BAR + 100, 300].mean()
    with pytest.raises(RuntimeError, match="is closed"):
        writer.add(np.zeros((2, 2, 3), np.uint8), Caption(0, 1, 0))


def test_a_video_that_cannot_be_written_says_why_and_never_blocks_the_caller(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    writer = VideoWriter(tmp_path / "file" / "chain.mp4", max_queue=2)
    for _ in range(50):  # never blocks, whatever the encoder does
        writer.add(np.zeros((20, 20, 3), np.uint8), Caption(0, 1, 0))
    summary = writer.close()
    assert summary.error and summary.frames == 0 and summary.dropped > 0


def test_frames_the_encoder_cannot_keep_up_with_are_dropped_and_counted(tmp_path):
    writer = VideoWriter(tmp_path / "burst.mp4", max_queue=3)
    accepted = sum(writer.add(np.zeros((200, 200, 3), np.uint8), Caption(0, 1, 0)) for _ in range(200))
    summary = writer.close()
    assert summary.frames == accepted and summary.dropped == 200 - accepted > 0


def test_a_chain_film_follows_subtasks_latents_and_plans_and_holds_the_outcome(tmp_path):
    from openhelix_ros.evaluation.video import ChainFilm

    step = 1_000_000_000 // 30
    film = ChainFilm(VideoWriter(tmp_path / "chain.mp4"), chain=0, chains=2, tasks=["open_drawer", "turn_on_led"],
                     latent_period_steps=10, step_ns=step)
    film.on_camera(Projection(K, looking_down()))
    film.begin_subtask(0, "open_drawer", "open the drawer")
    captions = []
    real_add = film.writer.add
    film.writer.add = lambda rgb, caption, *rest: captions.append((caption, bool(rest) and rest[0] is not None)) or real_add(
        rgb, caption, *rest)
    image = np.zeros((200, 200, 3), np.uint8)
    film.on_image(image, 0)  # no latent, no plan yet
    film.on_latent(0)
    film.on_plan(step, np.zeros((5, 3)), np.ones(5))
    for i in range(1, 14):
        film.on_image(image, i * step)
    film.begin_subtask(1, "turn_on_led", "turn on the led")
    film.on_latent(10 * step)
    film.on_image(image, 14 * step)
    film.finish(completed=1).close()
    first, later = captions[0][0], captions[13][0]
    assert (first.step, first.latent_age_steps, captions[0][1]) == (0, None, False)
    assert (later.step, later.latent_age_steps, later.subtask, later.marks) == (13, 13, 0, [None, None])
    assert captions[13][1]  # the plan stamped at step 1 is drawn from step 1 on
    moved = captions[14][0]
    assert (moved.subtask, moved.task, moved.marks, moved.latent_age_steps) == (1, "turn_on_led", [True, None], 4)
    assert len(captions) == 15 + ChainFilm.HOLD_FRAMES and captions[-1][0].marks == [True, False]


def test_a_lockstep_film_leaves_out_the_previous_episodes_images_even_when_stamped_later(tmp_path):
    """Sim time restarts at a reset: the previous episode's last image (stamped at its step 300) may
    arrive after the film began; only images from the reset's stamp on become frames."""
    from openhelix_ros.evaluation.video import ChainFilm

    step = 1_000_000_000 // 30
    film = ChainFilm(VideoWriter(tmp_path / "chain.mp4"), 0, 1, ["open_drawer"], step_ns=step, start_ns=0,
                     exact_start=True)
    steps = []
    real_add = film.writer.add
    film.writer.add = lambda rgb, caption, *rest: steps.append(caption.step) or real_add(rgb, caption, *rest)
    image = np.zeros((20, 20, 3), np.uint8)
    for stamp in (300 * step, 0, step, 2 * step):
        film.on_image(image, stamp)
    assert steps == [0, 1, 2]
    film.writer.close()
