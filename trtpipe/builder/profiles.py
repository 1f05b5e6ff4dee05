"""Optimization profiles: which min/opt/max shape every network input gets.

The rules follow trtexec: a dynamic batch axis without ``--batch`` gets 1:1:1 (and the build says
so); any other dynamic dimension must be given with ``--minShapes/--optShapes/--maxShapes`` (below,
"the shapes"; the deprecated ``build --shapes NAME:MIN:OPT:MAX`` gives the same), since guessing an image
size would build an engine that silently rejects the user's real inputs.

``--batch`` together with the shapes: the shapes give an input's full shapes, ``--batch`` the batch axis
of every input with a dynamic batch. For an input whose batch axis is dynamic and given as 1 in all three
shapes (``--minShapes images:1x3x32x32 --optShapes images:1x3x48x64 --maxShapes images:1x3x96x128``),
``--batch`` fills that axis (``--batch 1:8:32`` -> min 1x3x32x32, opt 8x3x48x64, max 32x3x96x128): the
shapes give the image sizes, ``--batch`` the batch range. A batch range in the shapes that differs from
``--batch`` is a contradiction and refused; one that equals it is accepted. Either way the profile
recorded in the sidecar is the one TensorRT was given.

Inputs that look like weights (a weight operand fed by a graph input: an export without its weights)
have no batch axis: ``--batch`` leaves them at their fixed shape.
"""

from __future__ import annotations

import dataclasses

from trtpipe.errors import ConfigError
from trtpipe.spec import BatchRange, BuildConfig, ShapeRange, TensorInfo


def resolve_profile(
    inputs: tuple[TensorInfo, ...], config: BuildConfig, *, weight_inputs: frozenset[str] = frozenset(),
    image_size: tuple[int, int, str] | None = None,
) -> tuple[list[ShapeRange], list[str]]:
    """Returns one ShapeRange per input and notes about defaults taken.

    Args:
        inputs: the network's inputs (-1 for dynamic dimensions).
        config: ``config.batch`` and ``config.shapes`` are used (see the module docstring for how they combine).
        weight_inputs: names of inputs that look like weights: ``--batch`` does not apply to them.
        image_size: (height, width, layout) the preprocess spec makes, when the spec says it (a spec file,
            ``--input-size``, a preset's size; not an assumed one). An image input whose height and width are its
            only dynamic axes besides the batch gets them from it, with a note. Defaults to None (shapes needed).

    Raises:
        ConfigError: the shapes name an unknown input or contradict a static dimension; a dynamic
            non-batch dimension has no shape; --batch given for an input whose batch is fixed, or
            contradicting the batch range the shapes give an input.
    """
    given = {s.name: s for s in config.shapes}
    names = [t.name for t in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(
            f"--minShapes/--optShapes/--maxShapes name {unknown}, but the network's inputs are {names}",
            "use the input names `trtpipe inspect MODEL.onnx` prints",
        )
    ranges, notes = [], []
    for tensor in inputs:
        if tensor.name in given:
            ranges.append(_with_batch(_check_against_static(tensor, given[tensor.name]), tensor, config.batch))
        elif tensor.name in weight_inputs and -1 not in tensor.shape:
            ranges.append(ShapeRange(tensor.name, tensor.shape, tensor.shape, tensor.shape))
        else:
            sized = _sized(tensor, image_size)
            shape_range, note = _from_batch(sized, config.batch)
            if sized is not tensor:
                note = (f"input {tensor.name!r}: height and width {image_size[0]}x{image_size[1]} from the preprocess "
                        f"spec (the ONNX leaves them dynamic; --minShapes/--optShapes/--maxShapes set a range)"
                        + (f"; {note}" if note else ""))
            ranges.append(shape_range)
            if note:
                notes.append(note)
    return ranges, notes


def resolve_profiles(
    inputs: tuple[TensorInfo, ...], config: BuildConfig, *, weight_inputs: frozenset[str] = frozenset(),
    image_size: tuple[int, int, str] | None = None,
) -> tuple[list[list[ShapeRange]], list[str]]:
    """One list of ShapeRanges per optimization profile (``config.profile_options``, profile 0 first), and notes.

    Each profile is resolved as :func:`resolve_profile` resolves one (trtexec's ``--profile=N`` groups each take
    their own ``--batch`` and shapes); with several, errors and notes say which profile they are about.

    Raises:
        ConfigError: as :func:`resolve_profile`, prefixed with the profile's number when there are several.
    """
    options = config.profile_options
    if len(options) == 1:
        ranges, notes = resolve_profile(inputs, config, weight_inputs=weight_inputs, image_size=image_size)
        return [ranges], notes
    profiles, notes = [], []
    for index, option in enumerate(options):
        single = dataclasses.replace(config, batch=option.batch, shapes=option.shapes, extra_profiles=())
        try:
            ranges, found = resolve_profile(inputs, single, weight_inputs=weight_inputs, image_size=image_size)
        except ConfigError as exc:
            raise ConfigError(f"--profile={index} ({option.describe()}): {exc.message}", exc.hint) from None
        profiles.append(ranges)
        notes += [f"profile {index}: {note}" for note in found]
    return profiles, notes


def _with_batch(shape_range: ShapeRange, tensor: TensorInfo, batch: BatchRange | None) -> ShapeRange:
    """The shapes given for ``tensor`` with ``--batch`` applied to its dynamic batch axis (see the module docstring)."""
    if batch is None:
        return shape_range
    given = (shape_range.min[0], shape_range.opt[0], shape_range.max[0])
    wanted = (batch.min, batch.opt, batch.max)
    if tensor.shape[0] != -1:
        if wanted != (tensor.shape[0],) * 3:
            raise ConfigError(
                f"--batch {batch} asks for a batch range, but input {tensor.name!r} has a fixed batch "
                f"(shape {_show(tensor.shape)})",
                "re-export the ONNX with a dynamic batch axis (trtpipe export does by default), or drop --batch",
            )
        return shape_range
    if given == wanted:
        return shape_range
    if given != (1, 1, 1):
        raise ConfigError(
            f"--batch {batch} and {shape_range.as_options()} give input {tensor.name!r} two batch ranges "
            f"({batch} and {':'.join(str(b) for b in given)})",
            f"give the batch once: batch 1 in all three of --minShapes/--optShapes/--maxShapes with --batch {batch}, "
            "or the batch inside them and no --batch",
        )
    return ShapeRange(
        shape_range.name,
        (batch.min, *shape_range.min[1:]),
        (batch.opt, *shape_range.opt[1:]),
        (batch.max, *shape_range.max[1:]),
    )


def check_image_size(ranges: list[ShapeRange], inputs: tuple[TensorInfo, ...], spec) -> str | None:
    """A warning when the profile of the image input cannot take the preprocess spec's image size, else None.

    The image input is the first input (the one ``Pipeline`` feeds), when it has rank 4; its height and
    width axes follow the spec's layout (NCHW or NHWC). A network with fused preprocessing takes NHWC frames
    of the spec's frame size (any size when dynamic: nothing to check).
    """
    if spec is None or not inputs or len(inputs[0].shape) != 4 or spec.fused_preprocess == "dynamic":
        return None
    shape_range = next(r for r in ranges if r.name == inputs[0].name)
    height, width = spec.fused_frame_size or (spec.height, spec.width)
    h_axis, w_axis = (2, 3) if spec.layout == "NCHW" and spec.fused_preprocess is None else (1, 2)
    fits = all(
        shape_range.min[axis] <= size <= shape_range.max[axis] for axis, size in ((h_axis, height), (w_axis, width))
    )
    if fits:
        return None
    sizes = (
        f"{shape_range.min[h_axis]}x{shape_range.min[w_axis]}..{shape_range.max[h_axis]}x{shape_range.max[w_axis]}"
    )
    example = list(shape_range.opt)
    example[h_axis], example[w_axis] = height, width
    if -1 not in inputs[0].shape[1:]:
        fix = "export the model at the spec's size, or correct the spec's height and width"
    else:
        fix = (f"give --minShapes/--maxShapes for {shape_range.name!r} with {height}x{width} inside, e.g. "
               f"--optShapes {shape_range.name}:{'x'.join(str(d) for d in example)}")
    makes = f"takes {height}x{width} frames" if spec.fused_preprocess else f"makes {height}x{width}"
    return (
        f"WARNING: the profile of input {shape_range.name!r} takes images of {sizes} (height x width), but the "
        f"preprocess spec ({spec.model}) {makes}: Pipeline.from_engine and trtpipe infer "
        f"will refuse every image; {fix}"
    )


def _check_against_static(tensor: TensorInfo, shape_range: ShapeRange) -> ShapeRange:
    if len(shape_range.min) != len(tensor.shape):
        raise ConfigError(
            f"the profile shapes for input {tensor.name!r} have rank {len(shape_range.min)}, the input has shape "
            f"{_show(tensor.shape)} (rank {len(tensor.shape)})",
            f"give {len(tensor.shape)} dimensions per shape",
        )
    for axis, static in enumerate(tensor.shape):
        if static != -1 and {shape_range.min[axis], shape_range.opt[axis], shape_range.max[axis]} != {static}:
            raise ConfigError(
                f"{shape_range.as_options()} sets axis {axis} of input {tensor.name!r}, which is fixed at {static} "
                f"(input shape {_show(tensor.shape)})",
                f"keep axis {axis} at {static}, or re-export the model with that axis dynamic",
            )
    return shape_range


def _sized(tensor: TensorInfo, image_size: tuple[int, int, str] | None) -> TensorInfo:
    """``tensor`` with its dynamic height and width set to ``image_size``'s, when those are its only dynamic axes
    besides the batch (4-D, in the spec's layout); else ``tensor`` itself."""
    if image_size is None or len(tensor.shape) != 4:
        return tensor
    height, width, layout = image_size
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    dynamic = {axis for axis, dim in enumerate(tensor.shape) if dim == -1} - {0}
    if not dynamic or not dynamic <= set(axes):
        return tensor
    shape = list(tensor.shape)
    for axis, size in zip(axes, (height, width)):
        if shape[axis] == -1:
            shape[axis] = size
    return dataclasses.replace(tensor, shape=tuple(shape))


def _from_batch(tensor: TensorInfo, batch: BatchRange | None) -> tuple[ShapeRange, str | None]:
    dynamic_axes = [axis for axis, dim in enumerate(tensor.shape) if dim == -1]
    if any(axis != 0 for axis in dynamic_axes):
        letters = iter("HW")  # the dynamic axes of an image input are its height and width (NCHW or NHWC)
        example = "x".join(next(letters, "D") if d == -1 else str(d) for d in tensor.shape[1:])
        batches = (batch.min, batch.opt, batch.max) if batch is not None else (1, 8, 32)
        raise ConfigError(
            f"input {tensor.name!r} has dynamic dimensions besides the batch (shape {_show(tensor.shape)}), "
            "and no --minShapes/--optShapes/--maxShapes for it",
            f"give its range with real sizes in place of {'/'.join(sorted(set(example) & set('HWD')))}, e.g. "
            f"{ShapeRange.example(tensor.name, example, batches)}, or the model's image size with --input-size HxW",
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
