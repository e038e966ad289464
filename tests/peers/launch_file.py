"""Run one launch file with the real ROS 2 launch system, as ``ros2 launch`` does (ros2cli is not
installable from a registry, launch and launch_ros are where ROS 2 is installed):

    python tests/peers/launch_file.py <path/to/file.launch.py> [name:=value ...]

Exits with the launch service's status; SIGINT shuts the launch down as Ctrl-C does.
"""

from __future__ import annotations

import signal
import sys

from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def main(argv: list[str]) -> int:
    path, assignments = argv[0], argv[1:]
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
    arguments = [tuple(word.split(":=", 1)) for word in assignments]
    # Non-interactive, as ros2 launch is without a terminal: launch then forwards SIGINT to its children
    # itself rather than assuming a terminal sent it to the whole process group.
    service = LaunchService(argv=assignments, noninteractive=True)
    # Included rather than loaded directly, so that the file's own directory is its launch location.
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=arguments)]))
    print("READY", flush=True)
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
