"""Models and offline training of OpenHelix-ROS.

This package never imports rclpy: the ROS nodes import it for inference, and training runs on machines
without ROS.
"""

__version__ = "0.1.0"
