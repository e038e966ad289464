from setuptools import find_packages, setup

package_name = "openhelix_training"

setup(
    name=package_name,
    version="0.1.0",
    description="OpenHelix-ROS models and offline training (importable without rclpy)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[package_name, package_name + ".*"]),
    package_data={package_name: ["configs/*.yaml", "weights/*.safetensors"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    entry_points={"console_scripts": ["openhelix-train = openhelix_training.train:main"]},
)
