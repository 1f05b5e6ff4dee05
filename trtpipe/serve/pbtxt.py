"""Writing Triton's config.pbtxt (protobuf text format) from plain dicts, without a protobuf dependency.

Only what model configurations use: nested messages (dict), repeated fields (list of dicts or scalars),
strings, numbers, booleans and enum values (:class:`Enum`, written unquoted). Exporting a repository thus
needs neither tritonclient nor protobuf; the tests parse the result with Triton's own ``ModelConfig``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping


class Enum(str):
    """An enum value such as ``TYPE_FP32`` or ``KIND_CPU``: written without quotes."""


def to_pbtxt(message: Mapping[str, Any], indent: int = 0) -> str:
    """Renders ``message`` as protobuf text, one field per line; ``None`` values are left out."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{\n{to_pbtxt(value, indent + 1)}{pad}}}")
        elif isinstance(value, (list, tuple)):
            if value and isinstance(value[0], Mapping):
                lines.extend(f"{pad}{key} {{\n{to_pbtxt(item, indent + 1)}{pad}}}" for item in value)
            else:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a double-quoted string with escapes protobuf text accepts
