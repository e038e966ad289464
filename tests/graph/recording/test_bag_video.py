"""A recorded bag's video (recording/video.py: film_bag), read back with ffmpeg frame for frame."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.evaluation.video import BAR, ChainFilm
from openhelix_ros.recording.video import film_bag
from openhelix_training.data.rosbag import write_synthetic_bag


def read_video(path) -> tuple[dict, list[np.ndarray]]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return meta, [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]


def test_a_bag_is_filmed_frame_for_frame_once_per_observation(tmp_path):
    # 12 frames, frame 3 re-sent (the lockstep bridge's resend): one frame of video each, plus the held end.
    write_synthetic_bag(tmp_path / "bag", frames=12, resent=(3,))
    summary = film_bag(tmp_path / "bag", tmp_path / "videos" / "episode_0000.mp4", completed=1)
    assert summary.error == "" and summary.dropped == 0
    assert summary.frames == 12 + ChainFilm.HOLD_FRAMES
    meta, frames = read_video(summary.path)
    assert meta["fps"] == 30 and len(frames) == summary.frames
    # The synthetic images are uniform with value i at frame i (20x30, scaled up by 14 to 420 wide):
    # the video's image region follows them, so frames were neither lost nor repeated.
    image_values = [float(frame[BAR + 100, 200].mean()) for frame in frames[:12]]
    assert image_values == sorted(image_values) and image_values[-1] - image_values[0] > 5
    # The caption names the task the bag's instruction asked for (the first line is light text on dark).
    assert frames[0][:BAR].max() > 200


def test_a_bag_without_images_or_no_bag_at_all_is_said_by_name(tmp_path):
    with pytest.raises(ValueError, match="is not a rosbag2 bag"):
        film_bag(tmp_path, tmp_path / "x.mp4")
    from rosbags.rosbag2 import StoragePlugin, Writer

    from openhelix_training.data.rosbag import typestore_with_project_types

    store = typestore_with_project_types()
    String = store.types["std_msgs/msg/String"]
    with Writer(tmp_path / "text_only", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/chatter", String.__msgtype__, typestore=store)
        writer.write(connection, 1, store.serialize_cdr(String(data="hello"), String.__msgtype__))
    summary = film_bag(tmp_path / "text_only", tmp_path / "text_only.mp4")
    assert summary.frames == 0 and "holds no image on camera/static/image_raw" in summary.error


def test_a_long_bag_loses_no_frame_to_the_encoder_queue(tmp_path):
    # More images than the writer's 300-frame queue: offline filming waits for the encoder, never drops.
    write_synthetic_bag(tmp_path / "long", frames=420)
    summary = film_bag(tmp_path / "long", tmp_path / "long.mp4", completed=0)
    assert summary.error == "" and summary.dropped == 0
    assert summary.frames == 420 + ChainFilm.HOLD_FRAMES
    assert len(read_video(summary.path)[1]) == summary.frames
