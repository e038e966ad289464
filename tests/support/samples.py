"""Deterministic, non-default values for every field of any ROS message type.

Used to check that a message survives a trip between processes with every field intact: values are
chosen so that they are exactly representable in their wire type (float32 in eighths, for example)
and differ between fields, so a swapped or dropped field shows.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from openhelix_ros.common.messages import message_class

_INT_RANGES = {
    "byte": (0, 255), "octet": (0, 255), "char": (0, 255), "uint8": (0, 255), "int8": (-128, 127),
    "uint16": (0, 65535), "int16": (-32768, 32767), "uint32": (0, 2**32 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint64": (0, 2**64 - 1), "int64": (-(2**63), 2**63 - 1),
}


def sample_message(type_name_or_class: Any, seed: int = 0) -> Any:
    cls = message_class(type_name_or_class) if isinstance(type_name_or_class, str) else type_name_or_class
    message = cls()
    for field, field_type in cls.get_fields_and_field_types().items():
        rng = random.Random(zlib.crc32(f"{cls.__name__}.{field}.{seed}".encode()))
        setattr(message, field, _sample_value(field, field_type, rng, seed))
    return message


def _sample_value(field: str, field_type: str, rng: random.Random, seed: int) -> Any:
    if field_type.startswith("sequence<"):
        inner = field_type[len("sequence<"):-1]
        element, _, bound = inner.partition(",")
        length = min(3, int(bound)) if bound.strip() else 3
        return [_sample_scalar(field, element.strip(), rng, seed + i) for i in range(length)]
    if field_type.endswith("]"):
        element, _, size = field_type[:-1].partition("[")
        return [_sample_scalar(field, element, rng, seed + i) for i in range(int(size))]
    return _sample_scalar(field, field_type, rng, seed)


def _sample_scalar(field: str, field_type: str, rng: random.Random, seed: int) -> Any:
    if "/" in field_type:
        return sample_message(field_type, seed)
    if field_type == "boolean":
        return True
    if field_type == "float":
        return rng.randint(-8000, 8000) / 8.0  # exact in float32
    if field_type == "double":
        return rng.uniform(-1000.0, 1000.0)
    if field_type in _INT_RANGES:
        low, high = _INT_RANGES[field_type]
        if field == "nanosec":
            high = 999_999_999  # builtin_interfaces Time/Duration keep it below one second
        return rng.randint(low, high)
    if field_type.startswith(("string", "wstring")):
        return f"{field} {rng.randint(0, 9999)} — öffne die Schublade"
    raise ValueError(f"no sample for field {field!r} of type {field_type!r}")
