"""Test-session isolation for everything that talks ROS 2.

Each pytest session claims a ROS domain no other session on this machine holds (a lock file per
domain), keeps discovery on loopback and puts ROS_HOME in a temporary directory; subprocesses the tests
start inherit all of it. Two test runs on one machine therefore never see each other's topics.

The ``processes`` fixture starts node, peer and command processes for a test (tests/support/processes.py)
and stops what is left when the test ends, printing each one's last lines when the test failed.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path

import pytest
from support.processes import Processes

# Fast DDS maps domain d to ports 7400 + 250 d (+ offsets); keep well inside the valid 0..232.
_DOMAINS = range(1, 200)
_held_lock = None
_FAILED = pytest.StashKey[bool]()


def _claim_ros_domain() -> int:
    global _held_lock
    lock_dir = Path(tempfile.gettempdir()) / "openhelix-ros-domains"
    lock_dir.mkdir(exist_ok=True)
    candidates = list(_DOMAINS)
    random.Random(os.getpid()).shuffle(candidates)
    for domain in candidates:
        handle = open(lock_dir / f"{domain}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held_lock = handle  # held until the session's process exits
        return domain
    raise RuntimeError(f"no free ROS domain among {_DOMAINS} (locks in {lock_dir})")


def pytest_configure(config):
    # Environment first, before any test module can import and initialise rclpy.
    ros_home = Path(tempfile.mkdtemp(prefix="openhelix-test-ros-home-"))
    os.environ["ROS_DOMAIN_ID"] = str(_claim_ros_domain())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_HOME"] = str(ros_home)
    os.environ["ROS_LOG_DIR"] = str(ros_home / "log")
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    # UDP on loopback, not Fast DDS's shared memory: the suite kills processes on purpose (and SIGKILLs
    # ones that do not stop), and a shared-memory port left behind by a killed participant can leave a
    # later process of the same domain deaf and mute: CI once saw a System 1 that never received the
    # latent published after it started, and vanished from the bridge's view 20 s later (a DDS lease).
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "UDPv4")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["PYTHONUNBUFFERED"] = "1"


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    return int(os.environ["ROS_DOMAIN_ID"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Note a failed test (for the ``processes`` fixture's teardown), and add the logs of the processes of
    module-scoped fixtures (``with Processes(...)``) still running to its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item.stash[_FAILED] = True
        if call.when == "call":
            for group in Processes.open_sets:
                if group.report_on_failure and group.started:
                    report.sections.append(("processes of a module fixture", group.report()))


@pytest.fixture
def processes(request, tmp_path):
    """Starts processes for this test (``processes.node(...)``, ``.peer(...)``, ``.command([...])``, see
    support.processes.Processes); on teardown stops every one still running (SIGINT, then SIGKILL) and,
    if the test failed, prints each one's last lines."""
    group = Processes(tmp_path, report_on_failure=False)
    yield group
    group.close(failed=request.node.stash.get(_FAILED, False))
