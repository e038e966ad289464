"""System 1: point cloud + robot state + the newest goal latent -> end-effector trajectory. core.py loads
the policy, chooses the Asy(N) latent and gates on its age, without ROS; node.py converts messages."""
