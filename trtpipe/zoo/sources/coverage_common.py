"""Shared pieces of the coverage sources (issue 6): output adapters, random-only weights, unavailable models.

Most detection and segmentation models of the coverage list are built from their library's config
classes: there are no pretrained weights to load offline, so ``create("pretrained")`` raises
WeightsError and ``--weights auto`` falls back to random weights, labelled as such everywhere.

Networks return what their library likes (dataclasses, dicts, lists); the exporter and the task heads
want tensors. :func:`adapt_outputs` wraps a network so that it returns one tensor or a tuple of tensors
in the order the heads expect, and names them (``output_names``) for the ONNX graph.

Importing this module needs no torch: torch is imported when a model is created.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from trtpipe.errors import DependencyError, WeightsError
from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.registry import register_model

NO_SOURCE = "no source installable here"
RANDOM_ONLY = "random only (config-built; no offline weights)"
DETECTION_OUTPUTS = ("logits", "boxes")  # DETR-style set prediction: (N, Q, classes), (N, Q, 4) cxcywh in 0..1


def random_only_status() -> str:
    return RANDOM_ONLY


def no_pretrained(name: str, library: str) -> WeightsError:
    """The WeightsError a config-built model raises for ``create("pretrained")``."""
    return WeightsError(
        f"{name} is built from {library}'s config classes; its pretrained weights download from a hub, "
        "which this machine cannot reach",
        "use --weights random (what --weights auto falls back to) or --weights PATH with a state_dict",
    )


def import_or_explain(module: str, name: str, package: str):
    """Imports ``module`` for model ``name``, turning ImportError into a DependencyError naming the package."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{name} needs {package}, which cannot be imported ({exc})",
            f"pip install {package} (the 'coverage' extra of trtpipe)",
        ) from None


def adapt_outputs(model, forward: Callable, output_names: Sequence[str]):
    """Wraps ``model`` so that ``wrapper(x) == forward(model, x)``, with ``wrapper.output_names`` set.

    Args:
        model: the library's torch module.
        forward: ``(model, images) -> tensor or tuple of tensors`` in head order.
        output_names: names of those tensors in the ONNX graph.
    """
    return _adapter_class()(model, forward, tuple(output_names))


@functools.cache
def _adapter_class():
    import torch

    class OutputAdapter(torch.nn.Module):
        """Runs a library model and returns plain tensors (see adapt_outputs)."""

        def __init__(self, model, forward, output_names):
            super().__init__()
            self.model = model
            self._forward = forward
            self.output_names = output_names

        def forward(self, images):
            return self._forward(self.model, images)

    return OutputAdapter


def register_config_model(
    name: str,
    *,
    source: str,
    task: str,
    description: str,
    preprocess: PreprocessSpec,
    build: Callable[[], object],
) -> None:
    """Registers a model that exists only with random weights here (``build()`` -> torch module)."""

    def create(weights: str):
        if weights != "random":
            raise no_pretrained(name, source)
        return build()

    register_model(
        name,
        source=source,
        task=task,
        description=description + " (random weights)",
        preprocess=preprocess,
        pretrained_tag=f"{source}:{name}",
        weights_status=random_only_status,
    )(create)


def register_unavailable(name: str, *, task: str, description: str, reason: str, size: int = 224) -> None:
    """Registers a model of the coverage list that no package installable here provides.

    It is listed by ``trtpipe zoo list`` with source "no source installable here"; exporting it raises
    a DependencyError that gives ``reason``.
    """

    def create(weights: str):
        raise DependencyError(f"{name}: {NO_SOURCE} ({reason})", "export it from its authors' code and pass the ONNX to trtpipe build")

    register_model(
        name,
        source=NO_SOURCE,
        task=task,
        description=f"{description}: {reason}",
        preprocess=PreprocessSpec(model=name, height=size, width=size, task=task),
        pretrained_tag="none",
        weights_status=lambda: NO_SOURCE,
    )(create)
