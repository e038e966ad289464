"""Fixtures of the openhelix_training tests: small generated data, tiny models, offline hub."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    import torch

    # 2 cores shared with other work: a second intra-op thread oversubscribes them and runs ~20x slower
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def calvin_dir(tmp_path_factory):
    """A generated data set in CALVIN's exact layout with CALVIN's image sizes (200x200, 84x84)."""
    from openhelix_training.data.calvin import write_calvin_episodes

    return write_calvin_episodes(tmp_path_factory.mktemp("calvin") / "training", num_windows=2,
                                 frames_per_window=16)


@pytest.fixture(scope="session")
def small_calvin_dir(tmp_path_factory):
    """The same layout with small images, for training runs."""
    from openhelix_training.data.calvin import write_calvin_episodes

    return write_calvin_episodes(tmp_path_factory.mktemp("calvin_small") / "training", num_windows=4,
                                 frames_per_window=16, static_size=48, gripper_size=32)
