"""An INT8 Q/DQ ONNX for the coverage report, made by the builder's own precision hook, run and built.

The coverage question is whether a model *can* be quantized explicitly and built, not how accurate the
result is (the weights are mostly random), so the calibration is a few photos and the ``max`` method.
The Q/DQ ONNX is what ``trtpipe build --precision int8`` would parse: ``prepare_precision_onnx`` with a
BuildConfig, fed a folder holding the sweep's scikit-image photos. ONNX Runtime must run it; then
TensorRT-RTX builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# Extra real photos for models with a dynamic batch axis: the hook calibrates in batches of 8
# (trtpipe.quant.prepare.CALIBRATION_BATCH) and wants at least one full batch.
EXTRA_PHOTOS = ("rocket", "cat", "immunohistochemistry", "hubble_deep_field", "colorwheel", "retina")


@dataclass(frozen=True)
class Int8Outcome:
    ok: bool  # Q/DQ ONNX written, run by ONNX Runtime, and built by TensorRT-RTX
    summary: str


def photo_batch(spec, photos: Sequence[str]) -> list[np.ndarray]:
    """scikit-image photos, preprocessed as ``spec`` says, one batch of 1 per photo."""
    from trtpipe.pipeline.preprocess import preprocess_batch

    return [preprocess_batch([image], spec) for image in _photos(photos)]


def write_photo_folder(folder: Path, photos: Sequence[str]) -> Path:
    """Writes the photos as PNG files into ``folder`` (once; atomically), the form calibration reads."""
    import cv2

    from trtpipe.io import atomic_write_bytes

    for name, image in zip(photos, _photos(photos)):
        path = folder / f"{name}.png"
        if not path.is_file():
            ok, encoded = cv2.imencode(".png", image)
            if not ok:
                raise OSError(f"cv2 could not encode {name} as PNG")
            atomic_write_bytes(path, encoded.tobytes())
    return folder


def qdq_onnx_for_coverage(onnx_path: Path, spec, photos: Sequence[str]) -> Int8Outcome:
    """Writes ``<stem>.int8.onnx`` beside ``onnx_path`` with the builder's hook, runs it in ONNX Runtime, builds it."""
    import onnx

    from trtpipe.builder.builder import build_engine
    from trtpipe.errors import TrtpipeError
    from trtpipe.quant.prepare import CALIBRATION_BATCH, prepare_precision_onnx
    from trtpipe.spec import BuildConfig

    work_dir = onnx_path.parent
    batch_dim = onnx.load(onnx_path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    dynamic = not (batch_dim.HasField("dim_value") and batch_dim.dim_value > 0)
    chosen = tuple(photos) + (EXTRA_PHOTOS[: max(0, CALIBRATION_BATCH - len(photos))] if dynamic else ())
    folder = write_photo_folder(work_dir / "calibration" / f"{len(chosen)}_photos", chosen)
    # placement and build on a handful of photos: too few to hold back a fidelity check's (it needs 32 images)
    config = BuildConfig(precision="int8", calib_images=str(folder), calib_max_images=len(chosen), calib_method="max",
                         fidelity_target="none")
    try:
        prepared = prepare_precision_onnx(onnx_path, config, spec, work_dir)
    except TrtpipeError as exc:  # opset < 13, nothing quantizable, a placement bug: a finding, not a crash
        return Int8Outcome(False, f"no Q/DQ ONNX: {exc.message[:200]}")
    placement = next((n.split(": ", 1)[1] for n in prepared.notes if n.startswith("Q/DQ placement")), prepared.precision_realised)
    ran = _run_in_onnxruntime(prepared.path, photo_batch(spec, photos[:1])[0])
    try:
        result = build_engine(prepared.path, config=BuildConfig(flavor="tensorrt_rtx"), spec=spec, force=True)
    except TrtpipeError as exc:
        return Int8Outcome(False, f"{placement} ({len(chosen)} photos); {ran}; TensorRT-RTX build failed: {exc.message[:200]}")
    result.engine_path.unlink()
    return Int8Outcome(
        True,
        f"{placement} ({len(chosen)} photos); {ran}; TensorRT-RTX built it in {result.sidecar.build_seconds:.1f} s "
        f"({result.sidecar.engine_bytes / 1e6:.1f} MB)",
    )


def _run_in_onnxruntime(path: Path, batch: np.ndarray) -> str:
    """Runs the Q/DQ ONNX once; says how. Raises what ONNX Runtime raises when it cannot run it at all."""
    import onnxruntime as ort

    def run(level) -> None:
        options = ort.SessionOptions()
        # Fatal only: the optimised attempt's failure is expected for some models and is reported in the summary.
        options.log_severity_level = 4
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, {session.get_inputs()[0].name: batch})

    try:
        run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        return "ONNX Runtime ran it"
    except Exception:  # noqa: BLE001 - ORT's fusions (QLinearMatMul) reject some valid Q/DQ patterns TensorRT takes (RF-DETR)
        run(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        return "ONNX Runtime ran it with its graph optimisations off (its Q/DQ fusion rejects this pattern)"


def _photos(names: Sequence[str]) -> list[np.ndarray]:
    """scikit-image's photos as BGR uint8 (as cv2 gives images)."""
    import cv2
    from skimage import data

    return [cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR) for name in names]
