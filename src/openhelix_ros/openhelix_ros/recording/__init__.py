"""Demonstrations into rosbag2 bags: core.py writes and recovers MCAP bags without ROS, node.py subscribes
to the topics raw."""
