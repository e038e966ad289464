"""A recorded episode's video: the static camera's frames of a bag as an MP4, captioned and drawn exactly as
the evaluator's chain videos are (evaluation/video.py: ChainFilm, VideoWriter), for ``openhelix collect
--videos`` and anyone holding a bag.

The bag is read once in recording order. Each instruction begins a subtask; each static image becomes a
frame with the newest plan stamped at or before it projected through the camera's intrinsics
(``camera/static/camera_info``) and pose (``camera/static/pose``); latents give the latent age. An image
the lockstep bridge re-sent (same stamp) is one frame. Messages are deserialized by rclpy into the graph's
own types, so the conversions and checks are the live nodes'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openhelix_ros.common import graph
from openhelix_ros.evaluation.video import VIDEO_FPS, ChainFilm, Projection, VideoSummary, VideoWriter

FILMED_TOPICS = (graph.STATIC_IMAGE, graph.STATIC_CAMERA_INFO, graph.STATIC_CAMERA_POSE, graph.EE_TRAJECTORY,
                 graph.GOAL_LATENT, graph.INSTRUCTION)


def film_bag(bag: str | Path, output: str | Path, tasks: list[str] | None = None, completed: int | None = None,
             control_rate: float = VIDEO_FPS, latent_period_steps: int = 0, episode: int = 0,
             episodes: int = 1) -> VideoSummary:
    """Write the video of ``bag`` to ``output`` and return what was written.

    ``tasks``: the episode's subtasks (default: those of the bag's instructions, in order). ``completed``:
    how many succeeded in a row, marked at the end (None: left unmarked). ``episode`` of ``episodes``
    captions the chain counter. The encoder runs in its own thread; this call reads the bag and waits
    for it. A bag without static images gives a summary with no frames and the reason in ``error``;
    ValueError when ``bag`` is no bag."""
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader

    from openhelix_ros.common.messages import message_class
    from openhelix_training.data.rosbag import is_bag, topic_is, typestore_with_project_types

    bag = Path(bag)
    if not is_bag(bag):
        raise ValueError(f"{bag} is not a rosbag2 bag (no metadata.yaml)")

    def filmed(bag_topic: str) -> str | None:
        return next((topic for topic in FILMED_TOPICS if topic_is(bag_topic, topic)), None)

    with AnyReader([bag], default_typestore=typestore_with_project_types()) as reader:
        connections = [c for c in reader.connections if filmed(c.topic)]
        types = {c.topic: message_class(c.msgtype) for c in connections}

        def read(topics):  # one message at a time: a long episode's images do not all fit in memory
            selected = [c for c in connections if filmed(c.topic) in topics]
            if not selected:
                return  # (rosbags reads every connection when given none)
            for connection, _, raw in reader.messages(connections=selected):
                yield filmed(connection.topic), deserialize_message(bytes(raw), types[connection.topic])

        if tasks is None:
            tasks = _tasks_of(message for _, message in read({graph.INSTRUCTION}))
        writer = VideoWriter(output, fps=round(control_rate), block=True)
        try:
            summary = _film(read, writer, tasks, completed, control_rate, latent_period_steps, episode, episodes)
        except BaseException:
            writer.close()  # the encoder thread and ffmpeg end; no half-written MP4 is left behind
            Path(output).unlink(missing_ok=True)
            raise
    if not summary.frames and not summary.error:
        summary.error = f"bag {bag} holds no image on {graph.STATIC_IMAGE}"
    elif summary.dropped and not summary.error:
        summary.error = f"{summary.dropped} frames were lost (the encoder failed)"
    return summary


def _film(read, writer: VideoWriter, tasks, completed, control_rate, latent_period_steps, episode,
          episodes) -> VideoSummary:
    """The filming loop of film_bag over ``read`` (its message iterator)."""
    from scipy.spatial.transform import Rotation

    from openhelix_ros.common.conversions import (
        camera_info_from_msg,
        image_to_array,
        pose_stamped_from_msg,
        stamp_to_ns,
        trajectory_from_msg,
    )

    film = ChainFilm(writer, episode, episodes, list(tasks) or [""], latent_period_steps=latent_period_steps,
                     step_ns=1e9 / control_rate)
    intrinsics: np.ndarray | None = None
    subtask, sequence = -1, None
    for topic, message in read(FILMED_TOPICS):
        try:
            if topic == graph.INSTRUCTION:
                if message.sequence != sequence or subtask < 0:
                    sequence, subtask = message.sequence, subtask + 1
                    film.begin_subtask(min(subtask, len(film.caption.marks) - 1), message.task, message.text)
            elif topic == graph.STATIC_CAMERA_INFO:
                intrinsics = camera_info_from_msg(message)[0]
            elif topic == graph.STATIC_CAMERA_POSE and intrinsics is not None:
                position, quaternion, _, _ = pose_stamped_from_msg(message)
                camera_to_world = np.eye(4)
                camera_to_world[:3, :3] = Rotation.from_quat(quaternion).as_matrix()
                camera_to_world[:3, 3] = position
                film.on_camera(Projection(intrinsics, camera_to_world))
            elif topic == graph.GOAL_LATENT:
                film.on_latent(stamp_to_ns(message.observation_stamp))
            elif topic == graph.EE_TRAJECTORY:
                plan = trajectory_from_msg(message)
                film.on_plan(plan.stamp_ns, plan.positions, plan.gripper)
            elif topic == graph.STATIC_IMAGE:
                rgb = image_to_array(message)
                if rgb.ndim == 3 and rgb.shape[2] >= 3:
                    film.on_image(rgb[..., :3], stamp_to_ns(message.header.stamp))
        except ValueError:
            continue  # a message the live nodes refuse too: the video just goes without it
    if completed is not None:
        film.finish(completed)
    return writer.close()


def _tasks_of(instructions) -> list[str]:
    """The subtasks an episode's instructions name: one for each new sequence number, in order."""
    tasks, sequence = [], None
    for message in instructions:
        if message.sequence != sequence or not tasks:
            tasks.append(message.task or message.text)
            sequence = message.sequence
    return tasks
