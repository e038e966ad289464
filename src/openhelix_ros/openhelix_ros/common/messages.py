"""Plain-Python views of ROS messages, without rosidl_runtime_py (no registry carries it).

``message_to_dict`` gives JSON-ready dicts (reports, logs, tests comparing fields across processes);
``message_from_dict`` fills a message from one; ``message_class`` imports a type from its
``pkg/msg/Type`` name, as ``ros2 topic`` spells it.
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np


def message_class(type_name: str) -> type:
    """The class of ``pkg/msg/Type`` (also ``pkg/Type`` or ``pkg/srv/Type``, ``pkg/action/Type``)."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a ROS interface type name: {type_name!r} (expected pkg/msg/Type)")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load ROS interface type {type_name!r}: {error}") from error


def is_message(value: Any) -> bool:
    return hasattr(type(value), "get_fields_and_field_types")


def message_to_dict(message: Any) -> dict[str, Any]:
    """Every field of ``message``, recursively, as plain Python values (lists, numbers, strings)."""
    return {field: _to_plain(getattr(message, field))
            for field in type(message).get_fields_and_field_types()}


def _to_plain(value: Any) -> Any:
    if is_message(value):
        return message_to_dict(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, array.array):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def message_from_dict(message_or_class: Any, values: Mapping[str, Any]) -> Any:
    """Set the fields named in ``values`` on a message (an instance, or a class to instantiate).

    Nested messages and sequences of messages are filled recursively; unknown field names raise
    ValueError naming them.
    """
    message = message_or_class() if isinstance(message_or_class, type) else message_or_class
    fields = type(message).get_fields_and_field_types()
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{type(message).__name__} has no field(s) {', '.join(unknown)}")
    for field, value in values.items():
        current = getattr(message, field)
        if is_message(current):
            message_from_dict(current, value)
        elif _is_message_sequence(fields[field]):
            element_class = message_class(_element_type(fields[field]))
            setattr(message, field, [message_from_dict(element_class, item) for item in value])
        else:
            setattr(message, field, value)
    return message


def _is_message_sequence(field_type: str) -> bool:
    return "/" in _element_type(field_type) and (field_type.startswith("sequence<") or "[" in field_type)


def _element_type(field_type: str) -> str:
    if field_type.startswith("sequence<"):
        inner = field_type[len("sequence<"):-1]
        return inner.split(",")[0]
    return field_type.split("[")[0]
