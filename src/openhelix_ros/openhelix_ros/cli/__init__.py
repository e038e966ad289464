"""The openhelix command: main.py dispatches one verb per module here (demo, eval, collect, up, say, train,
bench, ...)."""

from openhelix_ros.cli.main import main

__all__ = ["main"]
