"""Old opsets converted, not refused: ``onnx.version_converter`` up to the opset a precision step needs.

Other people's ONNX files (paddle2onnx exports at opset 11-12, older mmdeploy/YOLOX exports) are below the opset
per-channel Q/DQ needs (13), and their users cannot export again. ONNX's own version converter upgrades them
(every op has an adapter, or is unchanged between the versions); the result is checked with the ONNX checker and,
by the caller, against the original's outputs in ONNX Runtime on the images (:func:`max_output_error`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from trtpipe.errors import OnnxModelError


TARGET_OPSET = 17  # what trtpipe export writes and every TensorRT flavour parses
# Parity of a converted model with its original: the converter changes how ops are spelled, not what they compute,
# so anything beyond float rounding (relative to the outputs' magnitude) is a conversion defect.
CONVERSION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OpsetConversion:
    """An opset conversion: from, to, how long it took, and how far the outputs moved (once checked)."""

    from_opset: int
    to_opset: int
    seconds: float
    max_abs_error: float | None = None  # over every output, on ``images`` images; None: not checked yet
    images: int = 0

    def summary(self) -> str:
        """One line for the console and the sidecar's notes."""
        line = f"converted opset {self.from_opset} -> {self.to_opset} with onnx.version_converter ({self.seconds:.1f} s)"
        if self.max_abs_error is None:
            return line + "; outputs not compared with the original"
        return (
            f"{line}; outputs match the original in ONNX Runtime on {self.images} images "
            f"(max |error| {self.max_abs_error:.2g})"
        )

    def to_json(self) -> dict:
        return {
            "step": "opset_conversion", "from": self.from_opset, "to": self.to_opset, "tool": "onnx.version_converter",
            "max_abs_error": self.max_abs_error, "images": self.images,
        }


def default_opset(model) -> int:
    """The model's ai.onnx opset version (0 when it imports none)."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def upgrade_opset(model, minimum: int, source: str, why: str, target: int = TARGET_OPSET):
    """Returns (``model`` converted to ``target``, or to the lowest opset >= ``minimum`` that converts; the
    :class:`OpsetConversion`). A model already at ``minimum`` or above comes back as it is, with None.

    Args:
        model: onnx.ModelProto; not modified.
        minimum: the lowest opset the caller can use (13 for per-channel Q/DQ).
        source: the file, for messages.
        why: what needs the opset, for messages ("per-channel Q/DQ needs opset 13").

    Raises:
        OnnxModelError: no opset from ``minimum`` to ``target`` converts; names the op that blocked ``target``.
    """
    import onnx
    from onnx import version_converter

    found = default_opset(model)
    if found >= minimum:
        return model, None
    start = time.perf_counter()
    blocked = {}
    # target first (what trtpipe's own exports use), then the lowest that works: fewer adapters to go wrong
    for opset in (target, *range(minimum, target)):
        try:
            converted = version_converter.convert_version(model, opset)
            blocker = _deprecated_op(converted, opset)
            if blocker is None:
                onnx.checker.check_model(converted)
        except Exception as exc:  # the converter raises RuntimeError/ConvertError/ValidationError, all with a message
            blocker = _op_named_in(model, str(exc)) or f"an op the converter names only as: {_first_line(exc)}"
        if blocker is None:
            return converted, OpsetConversion(found, opset, time.perf_counter() - start)  # said once checked
        blocked[opset] = blocker
    raise OnnxModelError(
        f"{source}: opset {found}, {why}, and onnx.version_converter cannot convert it: {blocked[target]} blocks "
        f"opset {target}" + ("" if len(set(blocked.values())) == 1 else f" (and {blocked[minimum]} opset {minimum})"),
        f"replace {blocked[target].split(' ')[0]} with its opset-{target} equivalent (onnx-graphsurgeon), or build "
        "--precision fp32, which takes the opset as it is",
    )


def with_error(conversion: OpsetConversion, original, converted, batches, max_images: int = 8) -> OpsetConversion:
    """``conversion`` with the largest output difference of ``converted`` against ``original`` in ONNX Runtime.

    Args:
        batches: an iterable of network inputs (arrays for the one input, or {name: array} dicts).
        max_images: images compared (a few suffice: the converter either keeps the maths or breaks it).

    Raises:
        OnnxModelError: the outputs differ by more than float rounding (``CONVERSION_TOLERANCE`` of their scale).
    """
    import numpy as np

    from trtpipe.quant.calibrate import augmented_session
    from trtpipe.quant.feeds import as_feed, feed_size, image_input_name, onnxruntime_errors

    input_name = image_input_name(original)
    worst, scale, images = 0.0, 0.0, 0
    with onnxruntime_errors(f"model {original.graph.name!r} and its opset-{conversion.to_opset} conversion", "compare them"):
        sessions = [augmented_session(model, ())[0] for model in (original, converted)]
        for batch in batches:
            feed = as_feed(batch, input_name)
            before, after = (session.run(None, feed) for session in sessions)
            for a, b in zip(before, after):
                a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
                worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
                scale = max(scale, float(np.max(np.abs(a))) if a.size else 0.0)
            images += feed_size(batch)
            if images >= max_images:
                break
    checked = replace(conversion, max_abs_error=worst, images=images)
    if worst > CONVERSION_TOLERANCE * max(1.0, scale):
        raise OnnxModelError(
            f"the opset {conversion.from_opset} -> {conversion.to_opset} conversion changed the outputs: max |error| "
            f"{worst:.3g} on {images} images (outputs up to {scale:.3g})",
            "report the model to onnx (version_converter); meanwhile build --precision fp32 from the original",
        )
    return checked


def _deprecated_op(model, opset: int) -> str | None:
    """The first default-domain op with no schema, or a deprecated one, at ``opset`` (the converter keeps those)."""
    import onnx

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            return f"{node.op_type} (node {node.name!r}: no such op at opset {opset})"
        if schema.deprecated:
            return f"{node.op_type} (node {node.name!r}: deprecated at opset {opset})"
    return None


def _op_named_in(model, message: str) -> str | None:
    """The model's op type (and first node of it) that ``message`` names, if any."""
    for node in model.graph.node:
        if node.op_type in message:
            return f"{node.op_type} (node {node.name!r}: {message.splitlines()[0][:160]})"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
