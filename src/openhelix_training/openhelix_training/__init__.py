"""Models and offline training of OpenHelix-ROS.

This package never imports rclpy: the ROS nodes import it for inference, and training runs on machines
without ROS.

    from openhelix_training import System1, System2, load_checkpoint
    s2 = System2.from_config("tiny")              # or "embedded", or "llava-1.5-7b" with model_path=...
    s1 = System1.from_config("tiny", latent_dim=s2.config.latent_dim)
    latent = s2.encode(image, "open the drawer")
    trajectory = s1.predict(observation, latent, proprio)

The names below are imported when first used, so that `openhelix_training.checkpoint` (the checkpoint
layout, wanted by tools that never build a model) is read without torch and the models.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CameraView": ".observation",
    "ClipTextConfig": ".configuration_clip_text",
    "ClipTextSystem2": ".modeling_clip_text",
    "LatentGoal": ".goal",
    "CheckpointError": ".checkpoint",
    "LoadedCheckpoint": ".checkpoint",
    "DiffuserActor": ".modeling_diffuser_actor",
    "DiffuserActorConfig": ".configuration_diffuser_actor",
    "Normalization": ".normalization",
    "Observation": ".observation",
    "OpenHelixSystem2": ".modeling_openhelix",
    "OpenHelixSystem2Config": ".configuration_openhelix",
    "ObservationError": ".observation",
    "System1": ".modeling_system1",
    "System1Config": ".configuration_system1",
    "System2": ".modeling_system2",
    "System2Config": ".configuration_system2",
    "TrainConfig": ".train_config",
    "Trajectory": ".modeling_system1",
    "load_checkpoint": ".checkpoint",
    "proprio_from_robot_obs": ".modeling_system1",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'openhelix_training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
