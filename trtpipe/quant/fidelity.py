"""How far FP16 and INT8 move a model's outputs from FP32, measured in ONNX Runtime on the CPU.

Each precision's ONNX (the same FP16 / Q/DQ ONNX the strongly typed build parses) runs over the
evaluation images; figures are against FP32 on the same images. Where ONNX Runtime cannot run a
precision on this CPU, the result says so and carries no figures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from trtpipe.errors import ConfigError, InputError
from trtpipe.io import atomic_write_text
from trtpipe.quant.sensitivity import cosine_rows

log = logging.getLogger("trtpipe")

CONFIDENT = 0.5  # FP32 top-1 probability from which an image counts as "confident"
JSON_KEYS = (
    "precision", "top1_agreement", "top1_agreement_confident", "top5_overlap", "cosine_mean", "max_abs_error", "images",
)


@dataclass(frozen=True)
class FidelityResult:
    """One precision against FP32; figures are None when they could not be measured."""

    precision: str
    images: int
    top1_agreement: float | None = None
    top1_agreement_confident: float | None = None  # on images where FP32's top-1 probability >= 0.5
    top5_overlap: float | None = None  # mean share of FP32's top-5 classes also in this precision's top-5
    cosine_mean: float | None = None
    max_abs_error: float | None = None
    confident_images: int = 0
    note: str = ""  # why figures are missing, or what was prepared (kept layers, cache reuse)

    def to_json(self) -> dict:
        return {key: getattr(self, key) for key in JSON_KEYS}


def compare(precision: str, reference: np.ndarray, output: np.ndarray, note: str = "") -> FidelityResult:
    """Figures of ``output`` against the FP32 ``reference`` (first model output, one row per image).

    Top-1/top-5 figures need a 2-D ``(images, classes)`` output; other outputs get cosine and max error only.
    """
    cosine = float(np.mean(cosine_rows(reference, output)))
    max_error = float(np.max(np.abs(reference.astype(np.float64) - output.astype(np.float64))))
    if reference.ndim != 2 or reference.shape[1] < 5:
        return FidelityResult(precision, len(reference), cosine_mean=cosine, max_abs_error=max_error, note=note)
    ref_top1, out_top1 = reference.argmax(1), output.argmax(1)
    same = ref_top1 == out_top1
    shifted = reference - reference.max(axis=1, keepdims=True)
    probability = np.exp(shifted).max(axis=1) / np.exp(shifted).sum(axis=1)
    confident = probability >= CONFIDENT
    ref_top5 = np.argsort(-reference, axis=1)[:, :5]
    out_top5 = np.argsort(-output, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5.0 for a, b in zip(ref_top5, out_top5)])
    return FidelityResult(
        precision,
        len(reference),
        top1_agreement=float(same.mean()),
        top1_agreement_confident=float(same[confident].mean()) if confident.any() else None,
        top5_overlap=float(overlap),
        cosine_mean=cosine,
        max_abs_error=max_error,
        confident_images=int(confident.sum()),
        note=note,
    )


def run_onnx(path: Path, batches: Sequence[np.ndarray]) -> np.ndarray:
    """Runs an ONNX file on the CPU; returns the first output over all batches."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: batch})[0] for batch in batches]).astype(np.float32)


def measure_fidelity(
    onnx_path: str | Path,
    precisions: Sequence[str],
    images: str | Path,
    calib: str | Path | None,
    work_dir: str | Path,
    method: str = "entropy",
    max_images: int = 256,
    eval_images: int = 1000,
    keep_fp: tuple[str, ...] = (),
    auto_keep: int = 0,
    bias_correction: bool = True,
) -> tuple[list[FidelityResult], int]:
    """Prepares each precision's ONNX under ``work_dir`` and compares it with FP32 on ``images``.

    Returns:
        (one result per precision, number of evaluation images that are also calibration images).
    """
    import onnxruntime as ort

    from trtpipe.quant.images import load_images
    from trtpipe.quant.prepare import Int8Options, prepare_fp16, prepare_int8, require_spec, stem_of

    onnx_path, work_dir = Path(onnx_path), Path(work_dir)
    unknown = [p for p in precisions if p not in ("fp32", "fp16", "int8")]
    if unknown or not precisions:
        raise ConfigError(f"--precisions {','.join(precisions)}: unknown {unknown}", "use a subset of fp32,fp16,int8")
    spec = require_spec(onnx_path, None)
    evaluation = load_images(images, spec, eval_images, purpose="evaluation")
    batches = list(evaluation.batches(16))
    reference = run_onnx(onnx_path, batches)
    overlap = 0
    results = []
    for precision in precisions:
        if precision == "fp32":
            results.append(compare("fp32", reference, reference, "the reference"))
            continue
        if precision == "fp16":
            prepared = prepare_fp16(onnx_path, work_dir / f"{stem_of(onnx_path)}.fp16.onnx", keep_fp)
        else:
            if calib is None:
                raise ConfigError("int8 fidelity needs calibration images", "add --calib calib_data/ (make calib-data fills it)")
            options = Int8Options(Path(calib), method, max_images, keep_fp, auto_keep, bias_correction=bias_correction)
            prepared = prepare_int8(onnx_path, options, spec, work_dir / f"{stem_of(onnx_path)}.int8.onnx")
            overlap = _overlap(evaluation.paths, Path(calib))
        try:
            output = run_onnx(prepared.path, batches)
        except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.NotImplemented) as exc:
            reason = str(exc).splitlines()[0][:200]
            results.append(FidelityResult(precision, len(evaluation), note=f"ONNX Runtime on this CPU cannot run it: {reason}"))
            continue
        results.append(compare(precision, reference, output, "; ".join(prepared.notes)))
    return results, overlap


def _overlap(evaluation: Sequence[Path], calib_dir: Path) -> int:
    """How many evaluation files have the same content as a calibration file."""
    import hashlib

    from trtpipe.quant.images import find_images

    try:
        calib = {hashlib.sha256(p.read_bytes()).digest() for p in find_images(calib_dir)}
    except InputError:
        return 0
    return sum(hashlib.sha256(p.read_bytes()).digest() in calib for p in evaluation)


def format_table(results: Sequence[FidelityResult]) -> str:
    """A readable table, one row per precision; '-' where a figure could not be measured."""
    header = f"{'precision':<9} {'top-1':>7} {'top-1 conf':>10} {'top-5':>7} {'cosine':>8} {'max|err|':>9} {'images':>6}"
    lines = [header]

    def cell(value, width, fmt):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

    for r in results:
        lines.append(
            f"{r.precision:<9} {cell(r.top1_agreement, 7, '.3f')} {cell(r.top1_agreement_confident, 10, '.3f')} "
            f"{cell(r.top5_overlap, 7, '.3f')} {cell(r.cosine_mean, 8, '.5f')} {cell(r.max_abs_error, 9, '.4f')} {r.images:>6}"
        )
    for r in results:
        if r.note and r.precision != "fp32":
            lines.append(f"  {r.precision}: {r.note}")
    return "\n".join(lines)


def write_json(path: str | Path, results: Sequence[FidelityResult]) -> Path:
    return atomic_write_text(Path(path), json.dumps([r.to_json() for r in results], indent=2) + "\n")
