"""Optimization profiles: which min/opt/max shape every network input gets.

The rules follow trtexec: a dynamic batch axis without ``--batch`` gets 1:1:1 (and the build says
so); any other dynamic dimension must be given with ``--shapes``, since guessing an image size
would build an engine that silently rejects the user's real inputs.
"""

from __future__ import annotations

from trtpipe.errors import ConfigError
from trtpipe.spec import BatchRange, BuildConfig, ShapeRange, TensorInfo


def resolve_profile(inputs: tuple[TensorInfo, ...], config: BuildConfig) -> tuple[list[ShapeRange], list[str]]:
    """Returns one ShapeRange per input and notes about defaults taken.

    Raises:
        ConfigError: --shapes names an unknown input or contradicts a static dimension; a dynamic
            non-batch dimension has no shape; --batch given for an input whose batch is fixed.
    """
    given = {s.name: s for s in config.shapes}
    names = [t.name for t in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(
            f"--shapes names {unknown}, but the network's inputs are {names}",
            "use the input names `trtpipe inspect MODEL.onnx` prints",
        )
    ranges, notes = [], []
    for tensor in inputs:
        if tensor.name in given:
            ranges.append(_check_against_static(tensor, given[tensor.name]))
        else:
            shape_range, note = _from_batch(tensor, config.batch)
            ranges.append(shape_range)
            if note:
                notes.append(note)
    return ranges, notes


def _check_against_static(tensor: TensorInfo, shape_range: ShapeRange) -> ShapeRange:
    if len(shape_range.min) != len(tensor.shape):
        raise ConfigError(
            f"--shapes for input {tensor.name!r} has rank {len(shape_range.min)}, the input has shape "
            f"{_show(tensor.shape)} (rank {len(tensor.shape)})",
            f"give {len(tensor.shape)} dimensions per shape",
        )
    for axis, static in enumerate(tensor.shape):
        if static != -1 and {shape_range.min[axis], shape_range.opt[axis], shape_range.max[axis]} != {static}:
            raise ConfigError(
                f"--shapes {shape_range} sets axis {axis} of input {tensor.name!r}, which is fixed at {static} "
                f"(input shape {_show(tensor.shape)})",
                f"keep axis {axis} at {static}, or re-export the model with that axis dynamic",
            )
    return shape_range


def _from_batch(tensor: TensorInfo, batch: BatchRange | None) -> tuple[ShapeRange, str | None]:
    dynamic_axes = [axis for axis, dim in enumerate(tensor.shape) if dim == -1]
    if any(axis != 0 for axis in dynamic_axes):
        example = "x".join("H" if d == -1 else str(d) for d in tensor.shape[1:])
        raise ConfigError(
            f"input {tensor.name!r} has dynamic dimensions besides the batch (shape {_show(tensor.shape)}), "
            "and no --shapes for it",
            f"give its range, e.g. --shapes {tensor.name}:1x{example}:8x{example}:32x{example} with real sizes",
        )
    fixed = tensor.shape[1:]
    if not dynamic_axes:
        if batch is not None and (batch.min, batch.opt, batch.max) != (tensor.shape[0],) * 3:
            raise ConfigError(
                f"--batch {batch} asks for a batch range, but input {tensor.name!r} has a fixed shape "
                f"{_show(tensor.shape)}",
                "re-export the ONNX with a dynamic batch axis (trtpipe export does by default), or drop --batch",
            )
        return ShapeRange(tensor.name, tensor.shape, tensor.shape, tensor.shape), None
    note = None
    if batch is None:
        batch = BatchRange(1, 1, 1)
        note = (
            f"input {tensor.name!r} has a dynamic batch axis and no --batch was given: "
            "the profile is batch 1:1:1 (as trtexec does); pass --batch MIN:OPT:MAX for larger batches"
        )
    return ShapeRange(
        tensor.name, (batch.min, *fixed), (batch.opt, *fixed), (batch.max, *fixed)
    ), note


def _show(shape: tuple[int, ...]) -> str:
    return "x".join("?" if d == -1 else str(d) for d in shape)
