"""System 1's trajectory for RViz: the waypoints as a line strip and spheres, green where the gripper
is to be open and red where closed, so the grasp moments show."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from openhelix_ros.common.conversions import make_header, seconds_to_duration

# Open gripper green, closed red; the path itself blue.
_OPEN = ColorRGBA(r=0.1, g=0.8, b=0.2, a=1.0)
_CLOSED = ColorRGBA(r=0.9, g=0.1, b=0.1, a=1.0)
_LINE = ColorRGBA(r=0.2, g=0.5, b=1.0, a=1.0)


def trajectory_markers(positions: np.ndarray, gripper: np.ndarray, frame: str, stamp_ns: int) -> MarkerArray:
    """``positions`` (T, 3) world-frame waypoints and ``gripper`` (T,) commands (+1 open) as markers."""
    header = make_header(frame, stamp_ns)
    points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in positions]
    line = Marker(header=header, ns="system1_trajectory", id=0, type=Marker.LINE_STRIP, action=Marker.ADD,
                  points=points, color=_LINE)
    line.scale.x = 0.004
    line.pose.orientation.w = 1.0
    spheres = Marker(header=header, ns="system1_trajectory", id=1, type=Marker.SPHERE_LIST, action=Marker.ADD,
                     points=points, colors=[_OPEN if g > 0 else _CLOSED for g in gripper])
    spheres.scale.x = spheres.scale.y = spheres.scale.z = 0.012
    spheres.pose.orientation.w = 1.0
    # Markers outlive their trajectory by a second at most, so a stopped System 1 shows nothing stale.
    line.lifetime = spheres.lifetime = seconds_to_duration(1.0)
    return MarkerArray(markers=[line, spheres])
