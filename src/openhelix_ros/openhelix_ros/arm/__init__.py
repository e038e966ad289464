"""A physical arm: kinematics (Panda FK/IK), safety (workspace box, velocity limits; System 1 and the
bridge use it too), node.py (arm_interface: trajectories -> controller commands, estop)."""
