"""Task heads: turn raw network outputs into results, one registered class per task.

A head is registered with ``@register_head("classification")`` and built by :func:`create_head`;
an unknown task lists the known ones and suggests the closest.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

from trtpipe.errors import ConfigError

_HEADS: dict[str, type] = {}
_BUILTIN = ("classification", "detection", "segmentation")


def register_head(task: str) -> Callable[[type], type]:
    """Class decorator: makes ``cls`` the head for ``task``."""

    def decorate(cls: type) -> type:
        cls.task = task
        _HEADS[task] = cls
        return cls

    return decorate


def known_tasks() -> list[str]:
    _load_builtin()
    return sorted(_HEADS)


def create_head(task: str, **options):
    """Builds the head registered for ``task`` with ``options`` (labels, topk, thresholds ...)."""
    _load_builtin()
    cls = _HEADS.get(task)
    if cls is None:
        close = difflib.get_close_matches(task, _HEADS, n=1)
        raise ConfigError(
            f"no head for task {task!r}; known tasks: {', '.join(sorted(_HEADS))}",
            f"did you mean {close[0]!r}?" if close else "set the preprocess spec's task to a known one",
        )
    return cls(**options)


def _load_builtin() -> None:
    for name in _BUILTIN:
        importlib.import_module(f"trtpipe.pipeline.heads.{name}")
