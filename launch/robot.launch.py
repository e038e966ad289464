"""The dual-system graph on a physical Franka Panda: System 2, System 1 and arm_interface, in realtime.

Your camera driver and robot driver provide the inputs; remap every topic a cell wires onto the graph:

    ros2 launch openhelix robot.launch.py image:=/static_cam/color/image_raw points:=/fused/points \
        joint_states:=/franka/joint_states ee_pose:=/franka/ee_pose checkpoint:=/path/to/ckpt \
        joint_trajectory:=/fr3_arm_controller/joint_trajectory gripper_command:=/gripper/commands \
        estop:=/cell/estop

arm_interface turns each EETrajectory into a trajectory_msgs/JointTrajectory (`joint_trajectory`, for a
joint trajectory controller), a geometry_msgs/PoseStamped (`target_pose`, for Cartesian controllers)
and a std_msgs/Float64MultiArray (`gripper_command`); publish std_msgs/Bool true on `estop` to hold the
arm. Every node logs the model, checkpoint and clock it runs with at start: read them before you enable
the arm. Declared once in openhelix_ros/common/graphs.py (``ROBOT``); ``openhelix up robot`` is the same graph.
"""

from openhelix_ros.common.launching import generate_launch_description as graph_launch_description


def generate_launch_description():
    return graph_launch_description("robot")
