"""The colcon route: `colcon build` of the whole workspace, as a user with a ROS 2 install would run it.

Here the "ROS 2 install" is the venv's PyPI wheels; on a regular install the CMAKE_PROJECT_INCLUDE
mend is a no-op. The generated interfaces are imported from the colcon install space and used for a
real publish/subscribe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV = Path(sys.prefix)

CHECK_INSTALL = r"""
import json, time
import openhelix_msgs.msg as msgs
import openhelix_ros, openhelix_training
import rclpy
from rclpy.qos import QoSProfile
rclpy.init()
node = rclpy.create_node("colcon_install_check")
received = []
node.create_subscription(msgs.GoalLatent, "colcon_check", received.append, QoSProfile(depth=10))
publisher = node.create_publisher(msgs.GoalLatent, "colcon_check", QoSProfile(depth=10))
deadline = time.monotonic() + 20
while not received and time.monotonic() < deadline:
    publisher.publish(msgs.GoalLatent(latent=[0.5, -2.0], instruction="open the drawer", sequence=9))
    rclpy.spin_once(node, timeout_sec=0.1)
print(json.dumps({"msgs": msgs.__file__, "ros": openhelix_ros.__file__,
                  "training": openhelix_training.__file__,
                  "received": [[list(m.latent), m.instruction, m.sequence] for m in received[:1]]}))
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_colcon_builds_all_packages_and_the_install_space_works(tmp_path):
    colcon = shutil.which("colcon", path=str(VENV / "bin"))
    if colcon is None:
        pytest.skip("colcon is not installed in this environment (requirements/dev.txt installs it)")
    env = dict(os.environ, PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
               CMAKE_PREFIX_PATH=str(VENV), AMENT_PREFIX_PATH=str(VENV))
    install = tmp_path / "install"
    build = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build",
         "--base-paths", str(ROOT), str(ROOT / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(install),
         "--cmake-args", "-G", "Ninja", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}",
         f"-DCMAKE_PROJECT_INCLUDE={ROOT / 'cmake' / 'fix_wheel_python_includes.cmake'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=580)
    assert build.returncode == 0, f"colcon build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    for package in ("openhelix", "openhelix_msgs", "openhelix_ros", "openhelix_training"):
        assert f"Finished <<< {package} " in build.stdout, f"{package} was not built"
    assert (install / "openhelix" / "share" / "openhelix" / "launch" / "sim.launch.py").exists(), \
        "the metapackage installs the launch files for ros2 launch"
    assert (install / "openhelix_ros" / "lib" / "openhelix_ros" / "openhelix").exists(), \
        "ros2 run needs the executables in lib/openhelix_ros"

    # colcon's setup.sh replaces AMENT_PREFIX_PATH, dropping the venv's ROS: append it again.
    shell = (f'. "{install}/setup.sh" && export AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:{VENV}" && '
             f'exec "{sys.executable}" -c "$CHECK"')
    check = subprocess.run(["sh", "-c", shell], cwd=tmp_path, env=dict(env, CHECK=CHECK_INSTALL),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout.strip().splitlines()[-1])
    for key in ("msgs", "ros", "training"):
        assert report[key].startswith(str(install)), f"{key} imported from {report[key]}, not the install"
    assert report["received"] == [[[0.5, -2.0], "open the drawer", 9]]
