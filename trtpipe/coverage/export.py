"""Coverage export: the zoo's exporter as the sweep calls it (every stage the CLI's ``trtpipe export`` runs).

The sweep differs from ``trtpipe export NAME`` in two ways only: it always exports again (it measures
parity on every run), and a parity above tolerance is recorded in the report rather than failing the
export (random weights make some detectors' query selection numerically fragile, e.g. RT-DETR's top-k).
"""

from __future__ import annotations

from pathlib import Path

from trtpipe.zoo.export import ExportResult, export_model


def export_for_coverage(name: str, onnx_path: Path, *, opset: int = 17, exporter: str | None = None) -> ExportResult:
    """Exports zoo model ``name`` (pretrained weights where they load, else random) to ``onnx_path``.

    Args:
        name: the zoo name.
        onnx_path: where to write the ONNX; the preprocess spec goes beside it.
        opset: ONNX opset. Defaults to 17.
        exporter: torchscript | dynamo. Defaults to the zoo exporter's order (TorchScript, then dynamo at 18).
    """
    return export_model(name, onnx_path, weights="auto", opset=opset, exporter=exporter, strict_parity=False, force=True)
