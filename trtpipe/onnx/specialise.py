"""Shape specialisation and constant folding for TensorRT (what ``polygraphy surgeon sanitize`` does).

Exporters such as paddle2onnx leave image height and width symbolic (often under one shared name, ``?``) and compute
shapes at run time from ``Shape`` nodes. TensorRT then has to prove the profile consistent across that arithmetic and
sometimes cannot ("Input dimensions with this name have different constant values ..."), even with a static profile.
Fixing the dimensions the profile fixes anyway and folding the shape arithmetic into constants gives TensorRT a graph
it builds. Both steps are Polygraphy's: ``FoldConstants`` (onnx-graphsurgeon's folding, ONNX Runtime for the values,
shape inference between passes until nothing more folds), as ``polygraphy surgeon sanitize --fold-constants
--override-input-shapes`` runs them.

The batch axis stays symbolic: engines keep a batch range, and the ONNX Runtime fallback runs any batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from trtpipe.errors import DependencyError, OnnxModelError
from trtpipe.spec import ShapeRange, TensorInfo

log = logging.getLogger("trtpipe.onnx")

BATCH_DIM_NAME = "N"  # the symbolic batch axis of a specialised input (Polygraphy's override-input-shapes does the same)


@dataclass(frozen=True)
class Specialisation:
    """What :func:`specialise_and_fold` did: dimensions fixed per input, and the node counts before and after."""

    fixed: tuple[tuple[str, tuple[int | str, ...]], ...]  # (input name, new shape; BATCH_DIM_NAME for the batch)
    nodes_before: int
    nodes_after: int
    seconds: float

    def summary(self) -> str:
        """One line: which shapes were fixed and how many nodes folding removed."""
        shapes = ", ".join(f"{name}:[{','.join(str(d) for d in shape)}]" for name, shape in self.fixed)
        what = f"specialised {shapes} and folded constants" if self.fixed else "folded constants"
        return (
            f"{what} with Polygraphy ({self.nodes_before} -> {self.nodes_after} nodes, {self.seconds:.1f} s), "
            "as `polygraphy surgeon sanitize --fold-constants"
            + (f" --override-input-shapes {shapes.replace(', ', ' ')}`" if self.fixed else "`")
        )

    def to_json(self) -> dict:
        return {
            "step": "specialise_and_fold" if self.fixed else "fold_constants",
            "inputs": {name: list(shape) for name, shape in self.fixed},
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "tool": "polygraphy.backend.onnx.fold_constants",
        }


def dims_fixed_by_profile(inputs: tuple[TensorInfo, ...], ranges: list[ShapeRange]) -> dict[str, tuple[int | str, ...]]:
    """The inputs whose non-batch dimensions the ONNX leaves dynamic but the profile fixes (min == max).

    Returns:
        {input name: new shape}: the profile's fixed values, ``BATCH_DIM_NAME`` on axis 0 where the ONNX's batch
        is dynamic, the ONNX's own values elsewhere. Inputs with nothing to fix are left out.
    """
    by_name = {r.name: r for r in ranges}
    fixed = {}
    for tensor in inputs:
        shape_range = by_name.get(tensor.name)
        if shape_range is None:
            continue
        axes = [
            axis for axis, dim in enumerate(tensor.shape)
            if axis > 0 and dim < 0 and shape_range.min[axis] == shape_range.max[axis]
        ]
        if axes:
            fixed[tensor.name] = tuple(
                (BATCH_DIM_NAME if dim < 0 else dim) if axis == 0 else (shape_range.min[axis] if axis in axes else dim)
                for axis, dim in enumerate(tensor.shape)
            )
    return fixed


def specialise_and_fold(model, fixed: dict[str, tuple[int | str, ...]]):
    """Returns (``model`` with the ``fixed`` input shapes and its constants folded, a :class:`Specialisation`).

    Args:
        model: onnx.ModelProto; not modified.
        fixed: {input name: shape} (ints, or a name for a symbolic axis), e.g. from :func:`dims_fixed_by_profile`;
            empty: fold constants only.

    Raises:
        DependencyError: Polygraphy or onnx-graphsurgeon is not installed.
        OnnxModelError: ``fixed`` names an input the model does not have.
    """
    try:
        import onnx_graphsurgeon as gs
        from polygraphy.backend.onnx import fold_constants
        from polygraphy.logger import G_LOGGER
    except ImportError:
        raise DependencyError(
            "shape specialisation and constant folding need Polygraphy and onnx-graphsurgeon, which are not installed",
            "pip install polygraphy onnx-graphsurgeon (part of 'trtpipe[export]')",
        ) from None
    start = time.perf_counter()
    nodes_before = len(model.graph.node)
    graph = gs.import_onnx(model)
    inputs = {tensor.name: tensor for tensor in graph.inputs}
    unknown = sorted(set(fixed) - set(inputs))
    if unknown:
        raise OnnxModelError(
            f"cannot specialise inputs {unknown}: the model's inputs are {sorted(inputs)}",
            "name the inputs `trtpipe inspect MODEL.onnx` prints",
        )
    for name, shape in fixed.items():
        inputs[name].shape = list(shape)
    if fixed:
        # Shapes inferred for the old symbolic dims would contradict the new ones: let inference redo them.
        for tensor in graph.tensors().values():
            if tensor not in graph.inputs and tensor not in graph.outputs and not isinstance(tensor, gs.Constant):
                tensor.shape = None
    specialised = gs.export_onnx(graph, do_type_check=False)
    _carry_over(model, specialised)
    # Polygraphy logs every pass at INFO on its own logger; trtpipe says what was done in one line.
    # ONNX's shape inference, not ONNX Runtime's symbolic one: the latter gives up on these graphs with a warning.
    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        folded = fold_constants(specialised, error_ok=False, allow_onnxruntime_shape_inference=False)
    _carry_over(model, folded)
    seconds = time.perf_counter() - start
    done = Specialisation(tuple(fixed.items()), nodes_before, len(folded.graph.node), seconds)
    return folded, done


def _carry_over(source, target) -> None:
    """What export_onnx does not keep: IR version, producer, metadata (class names live there)."""
    target.ir_version = source.ir_version
    target.producer_name = source.producer_name
    target.producer_version = source.producer_version
    del target.metadata_props[:]
    target.metadata_props.extend(source.metadata_props)
