"""Node parameters as data: name, default, description and limits, declared by each component's
``parameters.py`` and turned into ROS parameter descriptors by ``node_utils.declare_parameters``.

ROS-free (rcl_interfaces' message classes only), so the launch-file and graph checks and the unit
tests read every node's parameters without importing rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

_PARAMETER_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


@dataclass(frozen=True)
class ParameterSpec:
    """A node parameter: name, default, a description ``ros2 param describe`` shows, and limits.

    ``type`` is needed only where the default does not tell it (an empty list, for instance).
    ``value_range`` becomes the descriptor's floating-point or integer range.
    """

    name: str
    default: Any
    description: str
    type: int | None = None
    read_only: bool = False
    value_range: tuple[float, float] | None = None

    def parameter_type(self) -> int:
        if self.type is not None:
            return self.type
        if isinstance(self.default, (list, tuple)):
            if not self.default:
                raise ValueError(f"parameter {self.name!r}: give a type for an empty list default")
            element = type(self.default[0])
            return {bool: ParameterType.PARAMETER_BOOL_ARRAY, int: ParameterType.PARAMETER_INTEGER_ARRAY,
                    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                    str: ParameterType.PARAMETER_STRING_ARRAY}[element]
        return _PARAMETER_TYPES[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, type=self.parameter_type(),
                                         description=self.description, read_only=self.read_only)
        if self.value_range is not None:
            low, high = self.value_range
            if descriptor.type == ParameterType.PARAMETER_INTEGER:
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        return descriptor
