"""Data: CALVIN's layout (generated here), keyposes, 20-point relative trajectories, rosbag2 bags."""

import json

import numpy as np
import pytest

from openhelix_training.data import CalvinDataset, collate_samples, compute_normalization, discover_keyposes
from openhelix_training.data.calvin import CalvinDataError, episode_path
from openhelix_training.data.trajectory import trajectory_to_next_keypose
from openhelix_training.geometry import euler_xyz_to_matrix, matrix_to_euler_xyz, rot6d_to_matrix


def test_generated_set_has_calvins_exact_layout(calvin_dir):
    files = sorted(p.name for p in calvin_dir.glob("episode_*.npz"))
    assert files[0] == "episode_0000000.npz" and len(files) == 32
    with np.load(episode_path(calvin_dir, 0)) as f:
        assert set(f.files) == {"rgb_static", "rgb_gripper", "depth_static", "depth_gripper", "robot_obs",
                                "scene_obs", "actions", "rel_actions"}
        assert f["rgb_static"].shape == (200, 200, 3) and f["rgb_static"].dtype == np.uint8
        assert f["rgb_gripper"].shape == (84, 84, 3) and f["depth_gripper"].shape == (84, 84)
        assert f["robot_obs"].shape == (15,) and f["scene_obs"].shape == (24,) and f["actions"].shape == (7,)
    ann = np.load(calvin_dir / "lang_annotations" / "auto_lang_ann.npy", allow_pickle=True).item()
    assert ann["info"]["indx"] == [(0, 15), (16, 31)]
    assert ann["language"]["ann"][0] == "lift the red block" and ann["language"]["task"][0] == "lift_red_block_table"


def test_keyposes_at_gripper_changes_stops_and_end():
    pos = np.zeros((30, 3))
    pos[:10, 0] = np.linspace(0, 0.3, 10)  # moves, then rests from frame 10 on
    pos[10:20, 0] = 0.3
    pos[20:, 0] = 0.3 + np.linspace(0, 0.2, 10)
    grip = np.where(np.arange(30) < 25, 1.0, -1.0)
    assert discover_keyposes(pos, grip) == [10, 24, 29]


def test_trajectory_to_next_keypose_is_relative_and_interpolated():
    n = 11
    pos = np.stack([np.linspace(0, 0.1, n), np.zeros(n), np.full(n, 0.3)], 1)
    euler = np.stack([np.full(n, np.pi), np.zeros(n), np.linspace(0, 0.5, n)], 1)
    grip = np.where(np.arange(n) < 8, 1.0, -1.0)
    traj = trajectory_to_next_keypose(pos, euler, grip, 2, [7, 10], length=20)
    assert traj["keypose"] == 7
    assert traj["rel_positions"].shape == (20, 3) and traj["rot6d"].shape == (20, 6)
    np.testing.assert_allclose(traj["rel_positions"][0], 0, atol=1e-7)
    np.testing.assert_allclose(traj["rel_positions"][-1], pos[7] - pos[2], atol=1e-6)
    np.testing.assert_allclose(np.diff(traj["rel_positions"][:, 0]), 0.05 / 19, atol=1e-6)  # uniform in time
    rel = rot6d_to_matrix(traj["rot6d"].astype(np.float64))
    np.testing.assert_allclose(rel[0], np.eye(3), atol=1e-6)
    end = euler_xyz_to_matrix(euler[2]) @ rel[-1]
    np.testing.assert_allclose(matrix_to_euler_xyz(end)[2], euler[7, 2], atol=1e-5)
    assert traj["gripper_open"].tolist() == [1.0] * 20


def test_calvin_reader_samples(calvin_dir):
    ds = CalvinDataset(calvin_dir)
    # keyposes: the frame before the gripper closes (6) and the end of each 16-frame window
    assert [w["keyposes"] for w in ds.windows] == [[6, 15], [6, 15]]
    assert len(ds) == 4
    assert ds.tasks == sorted({w["task"] for w in ds.windows}) and ds.tasks
    s = ds[1]
    assert s.frame == 6 and s.instruction == "lift the red block" and s.meta["keypose"] == 15
    assert s.rel_positions.shape == (20, 3) and s.gripper_open.shape == (20,)
    robot_obs = np.load(episode_path(calvin_dir, 6))["robot_obs"]
    np.testing.assert_allclose(s.proprio[:3], robot_obs[:3], atol=1e-6)
    end = np.load(episode_path(calvin_dir, 15))["robot_obs"]
    np.testing.assert_allclose(s.rel_positions[-1], end[:3] - robot_obs[:3], atol=1e-5)
    assert s.gripper_open[-1] == 0.0  # closed while lifting
    xyz, rgb = s.observation.point_cloud()
    assert np.all(np.abs(xyz[:, 2]) < 1e-4), "the generated scene is a table at z = 0"
    assert [c.name for c in s.observation.cameras] == ["static", "gripper"]
    batch = collate_samples([ds[0], ds[1]])
    assert batch["rel_positions"].shape == (2, 20, 3) and batch["proprio"].shape == (2, 10)
    norm = compute_normalization([ds[i] for i in range(len(ds))])
    assert np.all(np.array(norm.position_bounds[0]) < np.array(norm.position_bounds[1]))


def test_latent_delay_takes_an_earlier_image(calvin_dir):
    ds = CalvinDataset(calvin_dir, latent_delay=4)
    s = ds[1]
    assert s.meta["image_frame"] == s.frame - 4
    assert np.array_equal(s.image, np.load(episode_path(calvin_dir, s.frame - 4))["rgb_static"])
    assert ds[0].meta["image_frame"] == ds[0].frame  # clamped at the window start


def test_all_frames_mode(calvin_dir):
    assert len(CalvinDataset(calvin_dir, frames="all")) == 30


def test_bad_layouts_are_named(tmp_path, calvin_dir):
    with pytest.raises(CalvinDataError, match="auto_lang_ann.npy"):
        CalvinDataset(tmp_path)
    broken = tmp_path / "broken"
    (broken / "lang_annotations").mkdir(parents=True)
    np.save(broken / "lang_annotations" / "auto_lang_ann.npy",
            {"info": {"indx": [(0, 3)]}, "language": {"ann": ["x"], "task": ["t"]}}, allow_pickle=True)
    with pytest.raises(CalvinDataError, match="episode_0000000.npz missing"):
        CalvinDataset(broken)
    cams = json.loads((calvin_dir / "openhelix_cameras.json").read_text())
    assert set(cams) == {"static", "gripper"}


# ------------------------------------------------------------------------------------------------------
# rosbag2 (MCAP), written with rosbags in the topics and types the project's recorder records


def test_bag_written_then_read_into_samples(tmp_path):
    from openhelix_training.data.rosbag import BagDataset, write_synthetic_bag

    xyz, rgb, robot = write_synthetic_bag(tmp_path / "demo")
    ds = BagDataset(tmp_path / "demo", latent_delay=2)
    assert len(ds) == 2  # window start and the keypose before the gripper closes
    s0, s1 = ds[0], ds[1]
    assert s0.instruction == "open the drawer" and s0.task == "open_drawer"
    np.testing.assert_array_equal(s0.observation.points, xyz)
    np.testing.assert_array_equal(s0.observation.colors, rgb)
    assert s1.frame == 5 and s1.meta["keypose"] == 11
    np.testing.assert_allclose(s1.rel_positions[-1], robot[11, :3] - robot[5, :3], atol=1e-6)
    assert s1.image.shape == (20, 30, 3) and s1.image[0, 0, 0] == 3  # delayed by 2 frames
    # an image policy reads the cameras of the frame itself, not System 2's delayed image
    assert len(s1.observation.images) == 1 and s1.observation.images[0][0, 0, 0] == 5
    assert s1.gripper_open[0] == 1.0 and s1.gripper_open[-1] == 0.0
    batch = collate_samples([s0, s1])
    assert batch["rot6d"].shape == (2, 20, 6)


def test_states_before_a_recorded_cameras_first_image_are_skipped(tmp_path):
    from openhelix_training.data.rosbag import _read_frames_and_commands, write_synthetic_bag

    write_synthetic_bag(tmp_path / "late", first_image=3)
    frames, _ = _read_frames_and_commands([tmp_path / "late"], False, None, 0)
    assert [round((f.stamp - 1_000_000_000) / 33_000_000) for f in frames] == list(range(3, 12))
    assert all(f.image is not None for f in frames)


def test_bad_bags_are_named(tmp_path):
    from openhelix_training.data.rosbag import BagDataError, read_bag_samples

    with pytest.raises(BagDataError, match="does not exist"):
        read_bag_samples(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: [a bag")
    with pytest.raises(BagDataError, match="cannot read bag"):
        read_bag_samples(tmp_path / "junk")


def test_directory_of_bags_and_point_subsets(tmp_path):
    """`openhelix collect` writes runs/<name>/bags/episode_NNNN/ (and failed/): the directory reads as
    all its bags but the failed ones; max_points keeps a seeded subset of every cloud."""
    from openhelix_training.data.rosbag import BagDataError, BagDataset, write_synthetic_bag

    bags = tmp_path / "bags"
    xyz, _, _ = write_synthetic_bag(bags / "episode_0000")
    write_synthetic_bag(bags / "episode_0001")
    write_synthetic_bag(bags / "failed" / "episode_0002")
    ds = BagDataset(bags, max_points=100)
    assert [b.name for b in ds.bags] == ["episode_0000", "episode_0001"]
    assert len(ds) == 4
    points = ds[0].observation.points
    assert points.shape == (100, 3)
    assert {tuple(p) for p in points} <= {tuple(p) for p in xyz}
    np.testing.assert_array_equal(points, BagDataset(bags, max_points=100)[0].observation.points)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagDataError, match="neither a bag"):
        BagDataset(tmp_path / "empty")


def test_frame_trajectories_follow_the_recorded_steps(tmp_path):
    """trajectory 'frames': waypoint j is the pose j control steps later (the graph's waypoint timing),
    padded with the segment's last frame, and carries the gripper command that led there."""
    from openhelix_training.data.rosbag import BagDataset, write_synthetic_bag

    _, _, robot = write_synthetic_bag(tmp_path / "demo")  # 12 frames, x += 1 cm per frame, closes after 6
    ds = BagDataset(tmp_path / "demo", frames="all", trajectory="frames")
    assert [s.frame for s in ds] == list(range(11))
    s5 = ds[5]
    idx = np.minimum(np.arange(5, 25), 11)
    np.testing.assert_allclose(s5.rel_positions, robot[idx, :3] - robot[5, :3], atol=1e-6)
    np.testing.assert_array_equal(s5.gripper_open, (robot[idx, 14] > 0).astype(np.float32))
    assert s5.gripper_open[1] == 1.0 and s5.gripper_open[2] == 0.0  # frame 7 is the first closed one
    np.testing.assert_allclose(s5.rot6d, np.tile([1, 0, 0, 0, 1, 0], (20, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="trajectory"):
        BagDataset(tmp_path / "demo", trajectory="splines")


def test_command_trajectories_are_what_the_demonstrator_commanded(tmp_path):
    """trajectory 'commands': waypoint 0 is the tool's pose, waypoint j the target commanded at frame
    i + j - 1 (it leads the recorded pose: the arm lags its commands and pushes against contacts), the last
    command repeated; a frame nobody answered falls back to where the tool went next."""
    from openhelix_training.data.rosbag import BagDataError, BagDataset, write_synthetic_bag

    _, _, robot = write_synthetic_bag(tmp_path / "demo")  # command for frame i: x = 0.01 (i + 2), closes at 6
    ds = BagDataset(tmp_path / "demo", frames="all", trajectory="commands")
    assert [s.frame for s in ds] == list(range(11))
    s5 = ds[5]
    commanded_x = 0.01 * (np.minimum(np.arange(5, 24), 11) + 2)
    commanded_x[np.arange(5, 24) >= 11] = robot[11, 0]  # frame 11 has no answer: the tool's last pose
    np.testing.assert_allclose(s5.rel_positions[:, 0], np.r_[robot[5, 0], commanded_x] - robot[5, 0], atol=1e-6)
    np.testing.assert_allclose(s5.rel_positions[:, 1:], 0.0, atol=1e-6)
    assert s5.rel_positions[1, 0] == pytest.approx(0.02, abs=1e-6)  # two recorded steps ahead, not one
    np.testing.assert_array_equal(s5.gripper_open[:3], [1.0, 1.0, 0.0])  # waypoint 2 = the command at frame 6: close
    np.testing.assert_allclose(s5.rot6d, np.tile([1, 0, 0, 0, 1, 0], (20, 1)), atol=1e-6)
    # the frames reading of the same bag is one step per waypoint
    assert BagDataset(tmp_path / "demo", frames="all", trajectory="frames")[5].rel_positions[1, 0] == \
        pytest.approx(0.01, abs=1e-6)

    from rosbags.rosbag2 import Reader, Writer

    without = tmp_path / "no_commands"  # the same bag without its ee_trajectory connection
    with Reader(tmp_path / "demo") as reader, Writer(without, version=9) as writer:
        connections = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=None, msgdef=c.msgdef.data,
                                                   rihs01=c.digest)
                       for c in reader.connections if c.topic != "/ee_trajectory"}
        for connection, timestamp, raw in reader.messages():
            if connection.id in connections:
                writer.write(connections[connection.id], timestamp, raw)
    with pytest.raises(BagDataError, match="ee_trajectory"):
        BagDataset(without, trajectory="commands")


def test_a_re_sent_observation_is_one_frame(tmp_path):
    from openhelix_training.data.rosbag import read_bag_samples, write_synthetic_bag

    write_synthetic_bag(tmp_path / "once")
    write_synthetic_bag(tmp_path / "resent", resent=(3, 8))
    for trajectory in ("keypose", "frames", "commands"):
        once = read_bag_samples(tmp_path / "once", trajectory_length=4, frames="all", trajectory=trajectory)
        resent = read_bag_samples(tmp_path / "resent", trajectory_length=4, frames="all", trajectory=trajectory)
        assert [s.frame for s in resent] == [s.frame for s in once] and len(once) >= 10
        for a, b in zip(once, resent, strict=True):
            np.testing.assert_array_equal(a.rel_positions, b.rel_positions)
            np.testing.assert_array_equal(a.gripper_open, b.gripper_open)


def rewrite_bag(source, target, topic: str, change) -> None:
    """A copy of the bag ``source`` at ``target`` with every message of ``topic`` passed through ``change``."""
    from rosbags.rosbag2 import Reader, Writer

    from openhelix_training.data.rosbag import typestore_with_project_types

    store = typestore_with_project_types()
    with Reader(source) as reader, Writer(target, version=9) as writer:
        connections = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=None, msgdef=c.msgdef.data,
                                                   rihs01=c.digest) for c in reader.connections}
        for connection, timestamp, raw in reader.messages():
            if connection.topic == topic:
                raw = store.serialize_cdr(change(store.deserialize_cdr(raw, connection.msgtype)), connection.msgtype)
            writer.write(connections[connection.id], timestamp, raw)


@pytest.mark.parametrize("topic, change, expected", [
    # Sizes a header declares that nothing could hold: refused on the header, before any allocation.
    ("/points", lambda m: setattr(m, "width", 4097 * 4096) or m,
     "PointCloud2 has 16781312 points, more than the limit of 16777216 (MAX_CLOUD_POINTS)"),
    ("/points", lambda m: setattr(m, "width", 400) or m, "PointCloud2 data has 4800 bytes, expected 6400"),
    ("/points", lambda m: setattr(m, "point_step", 8) or m, "field 'z' at offset 8 lies outside its point_step of 8"),
    ("/camera/static/image_raw", lambda m: (setattr(m, "height", 5000), setattr(m, "width", 5000)) and m,
     "image has 25000000 pixels, more than the limit of 16777216 (MAX_IMAGE_PIXELS)"),
    ("/camera/static/image_raw", lambda m: setattr(m, "height", 21) or m,
     "image of 30x21 rgb8 with step 90 needs 1890 bytes, its data has 1800"),
])
def test_a_bag_declaring_more_than_its_bounds_is_refused_by_name(tmp_path, topic, change, expected):
    from openhelix_training.data.rosbag import BagDataError, read_bag_samples, write_synthetic_bag

    write_synthetic_bag(tmp_path / "demo")
    rewrite_bag(tmp_path / "demo", tmp_path / "bad", topic, change)
    with pytest.raises(BagDataError) as error:
        read_bag_samples(tmp_path / "bad")
    assert expected in str(error.value) and str(tmp_path / "bad") in str(error.value)


def test_a_replayed_message_larger_than_the_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from openhelix_training.data import rosbag
    from openhelix_training.data.rosbag import BagDataError, read_bag_samples, write_synthetic_bag

    write_synthetic_bag(tmp_path / "demo")  # clouds of 300 points: 4800 bytes of data, 4.9 kB serialized
    monkeypatch.setattr(rosbag, "MAX_BAG_MESSAGE_BYTES", 4096)
    with pytest.raises(BagDataError, match=r"bag message of /points at \d+ ns has 4\d\d\d bytes, more than the "
                                           r"limit of 4096 \(MAX_BAG_MESSAGE_BYTES\)"):
        read_bag_samples(tmp_path / "demo")
