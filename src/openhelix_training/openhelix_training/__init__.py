"""Models and offline training of OpenHelix-ROS.

This package never imports rclpy: the ROS nodes import it for inference, and training runs on machines
without ROS.

    from openhelix_training import System1, System2, load_checkpoint
    s2 = System2.from_config("tiny")              # or "embedded", or "llava-1.5-7b" with model_path=...
    s1 = System1.from_config("tiny", latent_dim=s2.config.latent_dim)
    latent = s2.encode(image, "open the drawer")
    trajectory = s1.predict(observation, latent, proprio)
"""

__version__ = "0.1.0"

from .checkpoint import CheckpointError
from .configuration_system1 import System1Config
from .configuration_system2 import System2Config
from .modeling_system1 import System1, Trajectory, proprio_from_robot_obs
from .modeling_system2 import System2
from .observation import CameraView, Observation, ObservationError
from .train import LoadedCheckpoint, load_checkpoint

__all__ = [
    "CameraView",
    "CheckpointError",
    "LoadedCheckpoint",
    "Observation",
    "ObservationError",
    "System1",
    "System1Config",
    "System2",
    "System2Config",
    "Trajectory",
    "load_checkpoint",
    "proprio_from_robot_obs",
]
