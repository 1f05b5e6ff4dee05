"""Task heads: turn raw network outputs into results, one registered class per task or head variant.

A head is registered with ``@register_head("classification")`` and built by :func:`create_head`.
A task's default head is registered under the task's name; variants under their own name
(``"detr_sigmoid"``: DETR set prediction scored with sigmoids, ``"yolox"``: anchor-free grid outputs). A
PreprocessSpec picks its head with ``spec.head``; without one, :func:`choose_head` picks from the network's output
shapes: a variant of the spec's task that recognises them (``auto``), else the task's default head if they fit it,
else ``"generic"``, which returns the named arrays. An unknown name lists the known ones and suggests the closest.

Each head class says what it decodes: ``task`` (the task it serves; None: any), ``auto`` (whether
:func:`choose_head` may pick it from shapes alone) and ``fits(outputs, input_size)`` (TensorInfo shapes, -1 dynamic).
"""

from __future__ import annotations

import difflib
import importlib
import logging
from typing import Callable

from trtpipe.errors import ConfigError, InputError

_HEADS: dict[str, type] = {}
_BUILTIN = ("classification", "detection", "segmentation", "grid", "generic", "gfl", "fused")  # modules; detection
# also registers detr_sigmoid, fused the heads of networks with their post-processing fused in (fused_detection, ...)


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


def choose_head(spec, outputs) -> str:
    """The head for a network with ``outputs`` (TensorInfo; None: unknown) and preprocess ``spec``.

    ``spec.head`` when set; else the first ``auto`` variant of ``spec.task`` whose ``fits`` accepts the output
    shapes, else the task's default head if it fits, else ``"generic"`` (logged once, naming the shapes).
    """
    _load_builtin()
    if spec.head:
        return spec.head
    if outputs is None:  # an engine that does not say its outputs (a stand-in): the task's default head
        return spec.task
    size = (spec.height, spec.width)
    variants = [name for name, cls in _HEADS.items() if getattr(cls, "auto", False) and getattr(cls, "task", None) == spec.task]
    for name in variants + [spec.task]:
        cls = _HEADS.get(name)
        if cls is not None and getattr(cls, "fits", lambda *_: True)(outputs, size):
            return name
    shapes = ", ".join(f"{o.name} {'x'.join('?' if d < 0 else str(d) for d in o.shape)}" for o in outputs)
    key = (spec.model, spec.task, shapes)
    if key not in _warned_generic:
        _warned_generic.add(key)
        logging.getLogger("trtpipe.pipeline").info(
            "outputs %s fit no %s head: the generic head returns them as named arrays (set the spec's head to pick one)",
            shapes, spec.task)
    return "generic"


_warned_generic: set = set()


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


def head_options() -> tuple[str, ...]:
    """Keyword options any registered head takes (``topk``, ``score_threshold`` ...), from their signatures.

    ``labels``, ``input_size`` and ``fused`` are left out: the Pipeline sets them from the spec.
    """
    import inspect

    _load_builtin()
    names = set()
    for cls in _HEADS.values():
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                names.add(parameter.name)
    return tuple(sorted(names - {"self", "labels", "input_size", "fused"}))


_warned_label_counts: set[tuple[str, int, int]] = set()


def check_label_count(head: str, labels, classes: int, *, background_offset_ok: bool = False) -> None:
    """Logs a warning (once per head, label count and class count) when a label set does not fit the output.

    Args:
        head: the head's name, for the message.
        labels: the label list in use (None or empty: nothing to check).
        classes: the number of classes the network's output has.
        background_offset_ok: a classifier with one class more than names (a TensorFlow-style background 0) fits.
    """
    if not labels or classes == len(labels) or (background_offset_ok and classes == len(labels) + 1):
        return
    key = (head, len(labels), classes)
    if key not in _warned_label_counts:
        _warned_label_counts.add(key)
        logging.getLogger("trtpipe.pipeline").warning(
            "WARNING: the %s output has %d classes but its label set has %d names (%s ...): names may be wrong; "
            "pass the model's own label set (labels=..., --labels FILE)", head, classes, len(labels), ", ".join(labels[:3]))


class RunInfo:
    """What every result says about how it was made (the result dataclasses have these fields).

    ``backend`` names the runtime ("tensorrt", "onnxruntime-cpu" ...), ``precision`` what the network computed
    in (fp32 | fp16 | int8), ``fallback`` why ONNX Runtime ran instead of TensorRT (None when it did not).
    """

    backend: str
    precision: str
    fallback: str | None

    @property
    def ran_on(self) -> str:
        """A short label for printouts: "tensorrt fp16", or "onnxruntime-cpu fp16 (CPU fallback)" (``fallback`` says why)."""
        label = " ".join(part for part in (self.backend, self.precision) if part)
        return f"{label} (CPU fallback)" if self.fallback else label

    def _run_dict(self) -> dict:
        run = {"backend": self.backend, "precision": self.precision}
        return {**run, "fallback": self.fallback} if self.fallback else run


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"trtpipe.pipeline.heads.{module}")
