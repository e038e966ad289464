"""Tele-operation: core.py turns twists and gripper commands into bounded plans, node.py converts messages."""
