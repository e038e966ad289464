"""OpenHelix-ROS: the ROS 2 graph of the dual-system VLA stack and its embedded simulator.

Nodes are thin wrappers over ROS-free cores in this package and in openhelix_training.
"""

__version__ = "0.1.0"
