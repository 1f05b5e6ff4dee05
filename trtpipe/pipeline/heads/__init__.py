"""Task heads: turn raw network outputs into results, one registered class per task or head variant.

A head is registered with ``@register_head("classification")`` and built by :func:`create_head`.
A task's default head is registered under the task's name; variants under their own name
(``"detr_sigmoid"``: DETR set prediction scored with sigmoids). A PreprocessSpec picks its head with
``spec.head or spec.task`` (:func:`head_name`); an unknown name lists the known ones and suggests the closest.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

from trtpipe.errors import ConfigError, InputError

_HEADS: dict[str, type] = {}
_BUILTIN = ("classification", "detection", "segmentation")  # modules; detection also registers detr_sigmoid


def register_head(name: str) -> Callable[[type], type]:
    """Class decorator: makes ``cls`` the head called ``name`` (a task, or a variant such as detr_sigmoid)."""

    def decorate(cls: type) -> type:
        cls.head_name = name
        _HEADS[name] = cls
        return cls

    return decorate


def known_heads() -> list[str]:
    _load_builtin()
    return sorted(_HEADS)


known_tasks = known_heads  # the name this function had before head variants existed


def head_name(spec) -> str:
    """The head a PreprocessSpec asks for: its ``head`` variant, else its task's default head."""
    return spec.head or spec.task


def create_head(name: str, **options):
    """Builds the head registered as ``name`` (a task or a head variant) with ``options`` (labels, topk, thresholds ...)."""
    _load_builtin()
    cls = _HEADS.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, _HEADS, n=1)
        raise ConfigError(
            f"no head named {name!r}; known heads: {', '.join(sorted(_HEADS))}",
            f"did you mean {close[0]!r}?" if close else "set the preprocess spec's head (or task) to a known one",
        )
    return cls(**options)


def run_head(head, outputs: dict, metas: list, images: list) -> list:
    """Decodes a batch with ``head``: one result per image, or an error naming the outputs (never fewer results,
    which would drop images without a word).

    Raises:
        InputError: the head decoded another number of results than images (outputs without the batch axis).
    """
    results = head(outputs, metas, images)
    if len(results) != len(metas):
        shapes = ", ".join(f"{name} {'x'.join(str(d) for d in value.shape)}" for name, value in outputs.items())
        raise InputError(
            f"the {getattr(head, 'head_name', 'task')} head decoded {len(results)} result(s) from outputs {shapes} for a "
            f"batch of {len(metas)} images: the outputs' first axis is not the batch",
            "export the model with a batch axis that runs from its input to its outputs, or run one image at a time "
            "(batch 1)",
        )
    return results


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"trtpipe.pipeline.heads.{module}")
