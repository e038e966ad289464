"""ROS 2 nodes of the OpenHelix graph: thin wrappers over the ROS-free cores in openhelix_ros."""
