"""What every component shares: the graph's names (graph), its declarations (graphs) and how to run them as
processes (processes) or launch them (launching), Asy(N) timing (timing), QoS, parameters and run_node
(node_utils), message conversions (conversions, messages), the ROS environment (environment)."""
