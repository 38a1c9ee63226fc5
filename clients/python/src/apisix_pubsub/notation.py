"""How the command line writes protobuf values as text, in `key=value` arguments and in output.

Integers are decimal (`-1`, `9223372036854775807`), `0x` hex, or APISIX's `#<digits>` form; every
64-bit value is exact. `bytes` are UTF-8 text as typed, or `hex:0aff`, `base64:Cv8=`, `@path`
(a file's contents), `text:...` (the rest as text, for text that starts with one of these
prefixes). Output uses the same notation, so a printed value can be typed back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_BYTES_PREFIXES = ("hex:", "base64:", "text:", "@")


class NotationError(ValueError):
    """A `key=value` argument that does not fit the command's fields."""


def parse_params(message: Descriptor, assignments: Iterable[str]) -> dict[str, Any]:
    """`["topic=t", "partition=0"]` -> `{"topic": "t", "partition": 0}` for `message`'s fields.

    A repeated field takes its key once per element.
    """
    params: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise NotationError(f"{assignment!r}: expected key=value")
        field = message.fields_by_name.get(key)
        if field is None:
            names = ", ".join(f.name for f in message.fields) or "none"
            raise NotationError(f"{message.name} has no field {key!r} (fields: {names})")
        value = parse_value(field, text)
        if field.is_repeated:
            params.setdefault(key, []).append(value)
        elif key in params:
            raise NotationError(f"{key} given twice")
        else:
            params[key] = value
    return params


def parse_value(field: FieldDescriptor, text: str) -> Any:
    """One value of `field` from its text."""
    kind = field.type
    if kind in _INT_RANGES:
        return _parse_int(field, text)
    if kind == FieldDescriptor.TYPE_BYTES:
        return parse_bytes(text)
    if kind == FieldDescriptor.TYPE_STRING:
        return text
    if kind == FieldDescriptor.TYPE_BOOL:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise NotationError(f"{field.name}: {text!r} is not true or false")
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            raise NotationError(f"{field.name}: {text!r} is not a number") from None
    if kind == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        value = field.enum_type.values_by_name.get(text)
        if value is None:
            return _parse_int(field, text)
        return value.number
    raise NotationError(f"{field.name} is a message: it cannot be given as key=value")


def _parse_int(field: FieldDescriptor, text: str) -> int:
    digits = text.removeprefix("#")
    try:
        value = int(digits, 16) if digits.lower().startswith("0x") else int(digits, 10)
    except ValueError:
        raise NotationError(f"{field.name}: {text!r} is not an integer") from None
    low, high = _INT_RANGES.get(field.type, (-(2**31), 2**31 - 1))
    if not low <= value <= high:
        raise NotationError(f"{field.name}: {value} is out of range [{low}, {high}]")
    return value


def parse_bytes(text: str) -> bytes:
    """`hex:..`, `base64:..`, `@path`, `text:..` or plain UTF-8 text, as bytes."""
    try:
        if text.startswith("hex:"):
            return bytes.fromhex(text[4:])
        if text.startswith("base64:"):
            return base64.b64decode(text[7:], validate=True)
    except (ValueError, binascii.Error) as e:
        raise NotationError(f"{text!r}: {e}") from None
    if text.startswith("@"):
        try:
            with open(text[1:], "rb") as f:
                return f.read()
        except OSError as e:
            raise NotationError(f"{text!r}: {e.strerror}") from None
    if text.startswith("text:"):
        return text[5:].encode()
    return text.encode()


def format_bytes(value: bytes) -> str:
    """The notation `parse_bytes` reads back: the text itself when it is UTF-8, else base64."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()
    return "text:" + text if text.startswith(_BYTES_PREFIXES) else text


def to_json(value: Any) -> Any:
    """Plain values (from `message_to_dict`) with bytes in the notation, ready for `json.dumps`.

    Integers stay integers: JSON numbers with every digit.
    """
    if isinstance(value, bytes):
        return format_bytes(value)
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def to_text(value: Any) -> str:
    """A readable one-line form: `state="hi"`, `offset=42`, `messages=[{offset=1 ...}]`."""
    if isinstance(value, dict):
        return " ".join(f"{k}={to_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return (
            "["
            + ", ".join(
                "{" + to_text(v) + "}" if isinstance(v, dict) else to_text(v) for v in value
            )
            + "]"
        )
    if isinstance(value, bytes):
        return json.dumps(format_bytes(value), ensure_ascii=False)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
