"""calvin_bridge: the simulator (the embedded play table or calvin_env) as ROS topics. core.py holds the
simulator side and the lockstep/realtime stepping without ROS; node.py converts messages."""
