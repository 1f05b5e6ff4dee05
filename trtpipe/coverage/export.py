"""Coverage export: a zoo model -> cleaned ONNX with one or more named outputs, and its parity with torch.

The zoo's ``export_model`` handles single-output classifiers; detectors return several tensors
(DETR: logits and boxes), named by the model's ``output_names``. This exporter handles both and
measures the largest absolute difference between ONNX Runtime and the source framework over every
output, which the coverage report records.
"""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from trtpipe.errors import OnnxModelError
from trtpipe.io import atomic_output
from trtpipe.spec import PreprocessSpec, preprocess_path_for
from trtpipe.zoo.registry import ModelEntry, load_model

log = logging.getLogger("trtpipe.coverage")

INPUT_NAME = "input"


@dataclass
class CoverageExport:
    """What one export produced."""

    onnx_path: Path
    spec: PreprocessSpec
    output_names: tuple[str, ...]
    opset: int
    exporter: str  # "torchscript" | "dynamo"
    parity_max_abs: float  # max |ORT - torch| over all outputs
    parity_scale: float  # max |torch| over all outputs, to judge parity_max_abs against
    seconds: float
    notes: list[str] = field(default_factory=list)


def export_for_coverage(
    entry: ModelEntry, onnx_path: Path, *, opset: int = 17, dynamic_batch: bool = True, dynamo: bool = False
) -> CoverageExport:
    """Exports ``entry`` (random weights unless pretrained ones load) to ``onnx_path`` and checks parity.

    Args:
        entry: the zoo entry.
        onnx_path: where to write the ONNX; the preprocess spec goes beside it.
        opset: ONNX opset. Defaults to 17.
        dynamic_batch: dynamic batch axis on the input and every output. Defaults to True.
        dynamo: use the dynamo exporter (opset >= 18) instead of the TorchScript one. Defaults to False.
    """
    import torch

    from trtpipe.onnx.cleanup import cleanup_onnx

    started = time.perf_counter()
    loaded = load_model(entry, "auto")
    module, spec = loaded.module, loaded.spec
    names = tuple(getattr(module, "output_names", ("logits" if entry.task == "classification" else "output",)))
    generator = torch.Generator().manual_seed(0)
    batch = 2 if dynamic_batch else 1
    sample = torch.randn(batch, 3, spec.height, spec.width, generator=generator)
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *names)} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (sample,), buffer, dynamo=dynamo, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=list(names), dynamic_axes=axes, do_constant_folding=True, verbose=False)
        except Exception as exc:  # the exporters raise many unrelated types
            raise OnnxModelError(
                f"{entry.name}: torch.onnx.export ({'dynamo' if dynamo else 'TorchScript'}, opset {opset}) failed: "
                f"{type(exc).__name__}: {_first_line(exc)}",
                "try the other exporter or opset",
            ) from None
    model = cleanup_onnx(onnx.load_from_string(buffer.getvalue()))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxModelError(f"{entry.name}: ONNX checker: {_first_line(exc)}", "try another opset") from None
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(onnx_path) as onnx_tmp, atomic_output(preprocess_path_for(onnx_path)) as spec_tmp:
        onnx.save(model, onnx_tmp)
        spec_tmp.write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    # Parity on another input (and batch size, when dynamic) than the one traced.
    check = torch.randn(3 if dynamic_batch else 1, 3, spec.height, spec.width, generator=generator)
    max_abs, scale = parity(module, onnx_path, check)
    return CoverageExport(onnx_path, spec, names, opset, "dynamo" if dynamo else "torchscript", max_abs, scale,
                          time.perf_counter() - started)


def parity(module, onnx_path: Path, images) -> tuple[float, float]:
    """(max |ONNX Runtime - torch| over every output, max |torch|) for one input batch."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    with torch.no_grad():
        expected = module(images)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    if len(got) != len(expected):
        raise OnnxModelError(f"{onnx_path}: {len(got)} ONNX outputs, torch gave {len(expected)}", "report the model")
    max_abs = scale = 0.0
    for ort_out, torch_out in zip(got, expected):
        reference = torch_out.numpy()
        if ort_out.shape != reference.shape:
            raise OnnxModelError(
                f"{onnx_path}: ONNX Runtime output shape {ort_out.shape} differs from torch's {reference.shape}",
                "export with a static batch",
            )
        max_abs = max(max_abs, float(np.max(np.abs(ort_out.astype(np.float64) - reference))))
        scale = max(scale, float(np.max(np.abs(reference))))
    return max_abs, scale


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
