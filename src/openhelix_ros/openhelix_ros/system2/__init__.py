"""System 2: camera image + instruction -> goal latent. core.py loads the MLLM and decides which lockstep
images are encoded, without ROS; node.py converts messages."""
