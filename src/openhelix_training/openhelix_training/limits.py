"""What one message may make this project allocate, live (the nodes, through openhelix_ros's
common/conversions.py) or replayed from a bag (data/rosbag.py, recovery): one place for both, so a
message the graph refused cannot reach training through a bag, nor the other way round.

Each bound is well above any real sensor's or policy's: a 4096 x 4096 camera, or 5000 s of waypoints
at 30 Hz, would be refused only beyond it. Checked on the message's header (its declared sizes) before
anything its size is allocated.
"""

from __future__ import annotations

MAX_CLOUD_POINTS = 4096 * 4096  # ~ 20 bytes a point once read: about 340 MB at most
MAX_POINT_FIELDS = 64
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_TRAJECTORY_WAYPOINTS = 10_000
MAX_JOINT_NAMES = 1_000
# A serialized message read back from a bag: the largest cloud above (16 bytes a point) fits, with room.
MAX_BAG_MESSAGE_BYTES = 512 * 1024 * 1024


def check_bound(what: str, count: int, limit: int, unit: str, name: str, error: type[ValueError] = ValueError) -> None:
    """``error`` "<what> has <count> <unit>, more than the limit of <limit> (<name>)" when ``count`` > ``limit``."""
    if count > limit:
        raise error(f"{what} has {count} {unit}, more than the limit of {limit} ({name})")
