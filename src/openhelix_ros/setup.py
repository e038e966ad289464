from setuptools import find_packages, setup

package_name = "openhelix_ros"

setup(
    name=package_name,
    version="0.1.0",
    description="OpenHelix-ROS nodes, embedded simulator and the openhelix command",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[package_name, package_name + ".*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "openhelix = openhelix_ros.cli.main:main",
            "recorder = openhelix_ros.recording.node:main",
            "arm_interface = openhelix_ros.arm.node:main",
            "calvin_bridge = openhelix_ros.bridge.node:main",
            "scripted_expert = openhelix_ros.expert.node:main",
            "teleop = openhelix_ros.teleop.node:main",
            "system1 = openhelix_ros.system1.node:main",
            "system2 = openhelix_ros.system2.node:main",
            "evaluator = openhelix_ros.evaluation.node:main",
        ],
    },
)
