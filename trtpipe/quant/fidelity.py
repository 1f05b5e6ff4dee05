"""How far FP16 and INT8 move a model's outputs from FP32, measured in ONNX Runtime on the CPU.

Each precision's ONNX (the same FP16 / Q/DQ ONNX the strongly typed build parses) runs over the
evaluation images; figures are against FP32 on the same images. Three things keep the figures honest:

- **A collapsed output is a failure, not a match.** An image whose output (or FP32 reference) is all zeros, or
  holds a NaN or an infinity, counts as a failed image: cosine 0 and top-1 disagreement for that image, and the
  result says how many images failed and how many NaN/inf values the output held. (Cosine similarity with an
  all-zero vector is undefined; calling it 1.0 made a dead INT8 model read as perfect.)
- **FP16 is measured with FP16 storage.** ONNX Runtime's CPU provider has few FP16 kernels: it wraps FP16 ops in
  FP32 Casts and then removes every adjacent FP32->FP16->FP32 Cast pair (``RemoveDuplicateCastTransformer``
  treats all float types as one group, so it sees no precision loss). That pass runs at every graph optimisation
  level and no session option turns it off (measured: ORT 1.32, ``ORT_DISABLE_ALL`` and
  ``optimization.disable_specified_optimizers`` alike), so a model whose activations exceed 65504 computed them in
  FP32 and scored cosine 1.0. :func:`keep_fp16_rounding` rewrites the measured graph so that every FP16 tensor
  passes an FP16 ``Identity`` that is also a graph output: ONNX Runtime must then materialise it in FP16 (round,
  overflow to inf) before the next op, as TensorRT's FP16 kernels store it.
- **A crash is a result.** Every model runs in a child process (``isolated.py``); ONNX Runtime refusing a
  model, or dying on it (a segfault on the FP16 ONNX of a torch-dynamo export was seen), gives a result "could not
  be measured: why" for that precision instead of ending trtpipe.

Where ONNX Runtime cannot run a precision on this CPU, the result says so and carries no figures.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from trtpipe.errors import ConfigError, InputError, OnnxModelError
from trtpipe.spec import PreprocessSpec
from trtpipe.io import atomic_write_text
from trtpipe.quant.isolated import IsolatedRunner
from trtpipe.quant.sensitivity import cosine_rows
from trtpipe.runtime.fp16_storage import has_fp16, keep_fp16_rounding  # noqa: F401 - keep_fp16_rounding is public here too

log = logging.getLogger("trtpipe")

CONFIDENT = 0.5  # FP32 top-1 probability from which an image counts as "confident"
EVALUATION_BATCH = 16
JSON_KEYS = (
    "precision", "top1_agreement", "top1_agreement_confident", "top5_overlap", "cosine_mean", "max_abs_error", "images",
    "failed_images", "nan_values", "inf_values", "weights", "note",
    # the task's own measure (task_fidelity.py); None where the task has none or it was not measurable
    "detection_precision", "detection_recall", "detection_f1", "detection_map50", "detection_mean_iou",
    "reference_boxes", "detected_boxes", "mask_miou", "pixel_agreement", "reference_pixels", "outputs",
    "held_back_files",
)
CANNOT_MEASURE = "could not be measured"


@dataclass(frozen=True)
class FidelityResult:
    """One precision against FP32; figures are None when they could not be measured."""

    precision: str
    images: int
    top1_agreement: float | None = None
    top1_agreement_confident: float | None = None  # on images where FP32's top-1 probability >= 0.5
    top5_overlap: float | None = None  # mean share of FP32's top-5 classes also in this precision's top-5
    cosine_mean: float | None = None  # per-image cosine, a failed image counting 0
    max_abs_error: float | None = None  # over the values finite on both sides
    confident_images: int = 0
    note: str = ""  # why figures are missing, what failed, or what was prepared (kept layers, cache reuse)
    failed_images: int | None = None  # images whose output or FP32 reference is all zero or not finite
    nan_values: int | None = None  # NaN values in this precision's outputs
    inf_values: int | None = None  # +-inf values in this precision's outputs
    weights: str | None = None  # the preprocess spec's weights ("random" says the network is untrained)
    # detection (task_fidelity.py): this precision's detections against FP32's after the head's NMS, IoU 0.5
    detection_precision: float | None = None
    detection_recall: float | None = None
    detection_f1: float | None = None
    detection_map50: float | None = None  # COCO 101-point AP at IoU 0.5, mean over the classes FP32 detected
    detection_mean_iou: float | None = None  # of the matched boxes
    reference_boxes: int | None = None  # FP32's detections (the ground truth's size)
    detected_boxes: int | None = None  # this precision's detections
    # segmentation: argmax masks against FP32's
    mask_miou: float | None = None
    pixel_agreement: float | None = None
    reference_pixels: int | None = None
    # every output: ({name, cosine, max_abs_error, relative_error}, ...); () when only the first output was run
    outputs: tuple = ()
    held_back_files: tuple[str, ...] = ()  # int8: calibration images held back for the search's check (not calibrated on)

    @property
    def measured(self) -> bool:
        return self.cosine_mean is not None

    def to_json(self) -> dict:
        """The JSON row: strict JSON (a non-finite figure, which compare never gives, would be written as null)."""
        row = {key: getattr(self, key) for key in JSON_KEYS}
        row["outputs"] = [{k: _finite_or_none(v) for k, v in entry.items()} for entry in self.outputs]
        row["held_back_files"] = list(self.held_back_files)
        return {key: _finite_or_none(v) for key, v in row.items()}

    @classmethod
    def could_not_measure(cls, precision: str, images: int, why: str, weights: str | None = None) -> "FidelityResult":
        return cls(precision, images, note=f"{CANNOT_MEASURE}: {why}", weights=weights)


def _finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def with_task_figures(result: FidelityResult, spec, reference: dict, output: dict) -> FidelityResult:
    """``result`` with the task's own figures and the per-output figures of ``output`` against FP32's ``reference``.

    Args:
        result: ``compare``'s figures of the first output.
        spec: the model's PreprocessSpec (its task picks the measure, its head decodes detections).
        reference, output: every batched output, {name: (images, ...)}, in the model's order.

    Raises:
        InputError: the spec's head cannot decode the outputs (a detector with another layout).
    """
    import dataclasses

    from trtpipe.quant.task_fidelity import per_output_figures, task_figures

    if not result.measured:
        return result
    task = task_figures(spec, reference, output)
    note = "; ".join(part for part in (result.note, task.note) if part)
    return dataclasses.replace(result, note=note, outputs=per_output_figures(reference, output), **task.figures)


def compare(
    precision: str, reference: np.ndarray, output: np.ndarray, note: str = "", *, weights: str | None = None
) -> FidelityResult:
    """Figures of ``output`` against the FP32 ``reference`` (first model output, one row per image).

    An image fails when either side's row is all zeros or holds a NaN/inf: it counts cosine 0 and top-1
    disagreement, and the note says how many failed and why. Top-1/top-5 figures need a 2-D ``(images, classes)``
    output with at least 5 classes; other outputs get cosine and max error only.

    Args:
        precision: the row's label (fp32, fp16, int8).
        reference: FP32 outputs, ``(images, ...)``.
        output: this precision's outputs, the same shape.
        note: what was prepared (kept in the result's note; failures are added in front).
        weights: the preprocess spec's weights field, carried into the result.
    """
    count = len(reference)
    if np.shape(output) != np.shape(reference):
        return FidelityResult.could_not_measure(
            precision, count, f"its output has shape {list(np.shape(output))}, FP32's {list(np.shape(reference))}",
            weights,
        )
    if count == 0:
        return FidelityResult.could_not_measure(precision, 0, "no evaluation images", weights)
    ref = np.asarray(reference, np.float64).reshape(count, -1)
    out = np.asarray(output, np.float64).reshape(count, -1)
    ref_finite, out_finite = np.isfinite(ref).all(axis=1), np.isfinite(out).all(axis=1)
    with np.errstate(invalid="ignore"):
        ref_zero = ref_finite & (np.abs(ref).max(axis=1, initial=0.0) == 0)
        out_zero = out_finite & (np.abs(out).max(axis=1, initial=0.0) == 0)
    failed = ~ref_finite | ~out_finite | ref_zero | out_zero
    ok = ~failed
    cosine = np.zeros(count)
    if ok.any():
        cosine[ok] = cosine_rows(ref[ok], out[ok])
    both_finite = np.isfinite(ref) & np.isfinite(out)
    max_error = float(np.abs(ref - out)[both_finite].max()) if both_finite.any() else None
    nan_values, inf_values = int(np.isnan(out).sum()), int(np.isinf(out).sum())
    failure = _failure_note(count, failed, ~out_finite, out_zero, ~ref_finite | ref_zero, nan_values, inf_values)
    note = "; ".join(part for part in (failure, note) if part)
    common = dict(
        cosine_mean=float(cosine.mean()), max_abs_error=max_error, note=note, failed_images=int(failed.sum()),
        nan_values=nan_values, inf_values=inf_values, weights=weights,
    )
    if np.ndim(reference) != 2 or np.shape(reference)[1] < 5:
        return FidelityResult(precision, count, **common)
    ref_top1, out_top1 = ref.argmax(axis=1), out.argmax(axis=1)
    same = (ref_top1 == out_top1) & ok
    probability = np.zeros(count)
    if ref_finite.any():
        shifted = ref[ref_finite] - ref[ref_finite].max(axis=1, keepdims=True)
        probability[ref_finite] = 1.0 / np.exp(shifted).sum(axis=1)  # the top class's softmax probability
    confident = (probability >= CONFIDENT) & ~ref_zero & ref_finite  # a failed output still counts against it
    from trtpipe.pipeline.heads.classification import top_classes  # ties ranked as the Pipeline ranks them

    ref_top5, out_top5 = top_classes(ref, 5), top_classes(out, 5)
    overlap = np.array([len(set(a) & set(b)) / 5.0 for a, b in zip(ref_top5, out_top5)]) * ok
    return FidelityResult(
        precision,
        count,
        top1_agreement=float(same.mean()),
        top1_agreement_confident=float(same[confident].mean()) if confident.any() else None,
        top5_overlap=float(overlap.mean()),
        confident_images=int(confident.sum()),
        **common,
    )


def _failure_note(count, failed, out_nonfinite, out_zero, ref_bad, nan_values, inf_values) -> str:
    """'3/24 images failed: output all zero (2), output NaN/inf (1; 5 NaN, 0 inf values)'; empty when none failed."""
    if not failed.any():
        return ""
    causes = []
    if out_zero.any():
        causes.append(f"output all zero ({int(out_zero.sum())})")
    if out_nonfinite.any():
        causes.append(f"output NaN/inf ({int(out_nonfinite.sum())}; {nan_values} NaN, {inf_values} inf values)")
    if ref_bad.any():
        causes.append(f"FP32 reference all zero or NaN/inf ({int(ref_bad.sum())})")
    return f"{int(failed.sum())}/{count} images failed: {', '.join(causes)}"


# ----------------------------------------------------------------------------------------------
# Running a model as its precision runs: FP16 storage kept (isolated.py runs this in a child process)
# ----------------------------------------------------------------------------------------------


def first_output(
    path: str | Path,
    images,
    indices: np.ndarray,
    batch_size: int,
    progress: str | None = None,
    fp16_storage: bool = True,
    all_outputs: bool = False,
) -> np.ndarray | dict[str, np.ndarray]:
    """Runs the ONNX at ``path`` over ``images[indices]`` in ONNX Runtime (CPU) and returns its first output.

    A fixed-batch network's ragged end is padded and the padding's rows are dropped, so there is one row per image.
    With ``all_outputs``, returns {name: array} of every output whose first axis is the batch (in the model's
    order; an output without the batch axis cannot be split per image and is left out).

    Args:
        images: an ImageSet, usually ``for_network`` (the input's dtype, fixed batch, feeds hook).
        progress: a progress-bar label (shown on a terminal only), or None.
        fp16_storage: FP16 tensors are stored as FP16 between ops (:func:`keep_fp16_rounding`); False runs the
            graph as a plain InferenceSession does (which may compute them in FP32, see the module's docstring).

    Raises:
        OnnxModelError: ONNX Runtime cannot load or run it.
    """
    import onnx
    import onnxruntime as ort
    from trtpipe.runtime.onnxruntime_engine import QDQ_SESSION_OPTIONS

    from trtpipe.quant.feeds import as_feed, feed_size, image_input_name, onnxruntime_errors

    path = Path(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    graph_only = onnx.load(str(path), load_external_data=False)
    with onnxruntime_errors(path.name, "run it", graph_only):  # the graph names a kernel it lacks (bfloat16)
        input_name = image_input_name(graph_only)
        source: str | bytes = str(path)
        if fp16_storage and has_fp16(graph_only):
            rounded, _ = keep_fp16_rounding(onnx.load(str(path)))
            source = rounded.SerializeToString()
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"], **QDQ_SESSION_OPTIONS)
        # the model's own outputs: keep_fp16_rounding adds one per FP16 tensor, which are not the model's
        names = [o.name for o in graph_only.graph.output]
        wanted = names if all_outputs else [session.get_outputs()[0].name]
        batched = dict.fromkeys(wanted, True)
        bar = _bar(len(indices), progress)
        outputs: dict[str, list] = {name: [] for name in wanted}
        fed = 0
        for batch in images.batches(batch_size, indices, ragged="pad"):
            for name, value in zip(wanted, session.run(wanted, as_feed(batch, input_name))):
                outputs[name].append(value)
                batched[name] &= name == wanted[0] or (np.ndim(value) > 0 and len(value) == feed_size(batch))
            fed += feed_size(batch)
            if bar is not None:
                bar.update(min(feed_size(batch), len(indices) - bar.n))
        if bar is not None:
            bar.close()

    def joined(parts: list) -> np.ndarray:
        if not parts:
            return np.zeros((0,), np.float32)
        output = np.concatenate(parts)
        return output[: len(indices)] if fed > len(indices) else output  # a fixed batch's padding: one row per image

    if not all_outputs:
        return joined(outputs[wanted[0]])
    return {name: joined(parts) for name, parts in outputs.items() if batched[name] or not parts}


def _bar(total: int, label: str | None):
    if label is None:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=label, unit="img", leave=False, disable=None)


# ----------------------------------------------------------------------------------------------
# Measuring every precision
# ----------------------------------------------------------------------------------------------


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
    *,
    feeds=None,
    progress: bool = True,
    fidelity_target: str = "auto",
    spec: PreprocessSpec | None = None,
) -> tuple[list[FidelityResult], int]:
    """Prepares each precision's ONNX under ``work_dir`` and compares it with FP32 on ``images``.

    The ONNX files go to ``<stem>.fidelity.fp16.onnx`` / ``<stem>.fidelity.int8.onnx`` and the calibration cache
    to ``<stem>.fidelity.int8.calib.json``: never the names a build writes, so measuring does not replace the
    ONNX an engine was built from nor its calibration cache, whatever ``work_dir`` is.

    Args:
        onnx_path: the FP32 ONNX (its ``<stem>.preprocess.json`` beside it), or one that came quantized: measured as
            it is (its own reference; FP16 converts the float parts around its Q/DQ; int8 is not measured, as
            calibration would quantize it twice).
        precisions: a subset of fp32, fp16, int8, in the order of the results.
        images: evaluation image folder. calib: calibration image folder (int8).
        feeds: image batch -> {input name: array} for a multi-input model (see ``trtpipe.quant.feeds``).
        progress: progress bars on a terminal.
        fidelity_target: int8: the build's fidelity target (``auto``, ``none`` or ``cosine=...``): layers are kept
            as a build keeps them, so the INT8 row measures what ``build`` makes; a missed target is reported in
            the row's note, not raised.
        spec: the preprocess spec (``trtpipe.presets.resolve_spec``). Defaults to ``<stem>.preprocess.json``.

    Returns:
        (one result per precision, number of evaluation images that are also calibration images).
        A precision ONNX Runtime refuses or crashes on gets a result without figures whose note says why.

    Raises:
        ConfigError: unknown precisions, int8 without calibration images.
        InputError: a missing spec or image folder; a model images cannot feed (several inputs, a spec that
            does not fit the input). OnnxModelError: ONNX Runtime cannot run the FP32 model itself; an IR version the
            installed onnx cannot read, an input axis of size 0, a plugin node, or Q/DQ that TensorRT refuses
            (asymmetric, a type it lacks), each before any work.
    """
    import dataclasses

    import onnx

    from trtpipe.onnx.load import check_ir_version, check_no_empty_axes, check_no_plugin_nodes
    from trtpipe.onnx.quantized import check_tensorrt_takes, scan_quantization
    from trtpipe.quant.feeds import batch_indices, network_feeder
    from trtpipe.quant.images import find_images, load_images
    from trtpipe.quant.prepare import Int8Options, prepare_fp16, prepare_int8, require_spec, stem_of

    onnx_path, work_dir = Path(onnx_path), Path(work_dir)
    unknown = [p for p in precisions if p not in ("fp32", "fp16", "int8", "fp8")]
    if unknown or not precisions:
        raise ConfigError(f"--precisions {','.join(precisions)}: unknown {unknown}", "use a subset of fp32,fp16,int8,fp8")
    if "int8" in precisions or "fp8" in precisions:
        if calib is None:
            raise ConfigError("int8/fp8 fidelity needs calibration images",
                              "add --calib calib_data/ (make calib-data fills it)")
        find_images(calib, 1)  # a missing or empty folder is said now, not after the FP32 and FP16 runs
    graph_only = onnx.load(str(onnx_path), load_external_data=False)
    check_ir_version(onnx_path, graph_only, "fidelity")  # ONNX Runtime's own refusal cuts the reason off
    check_no_empty_axes(onnx_path, graph_only)
    check_no_plugin_nodes(onnx_path, graph_only, "fidelity")
    quantization = scan_quantization(graph_only)
    if quantization:  # measured as it is; what TensorRT cannot build is refused as build and calibrate refuse it
        check_tensorrt_takes(quantization, onnx_path, "fidelity")
    spec = require_spec(onnx_path, spec)
    feeder = network_feeder(graph_only, spec, onnx_path, feeds)
    evaluation = load_images(images, spec, eval_images, purpose="evaluation", progress=progress).for_network(feeder)
    indices = np.arange(len(evaluation))
    batch = feeder.batch_size(EVALUATION_BATCH)
    padding = batch_indices(indices, batch, feeder.fixed_batch is not None, ragged="pad")[1]
    if padding:  # said here once (the child processes that batch the images know it already)
        log.warning("%s", padding)
        evaluation.notes.append(padding)
    stem = stem_of(onnx_path)
    weights = spec.weights
    overlap = 0
    results = []
    range_images, range_note = _fp16_range_images(calib, images)
    with IsolatedRunner(evaluation, indices, batch) as runner:
        reference_outputs = runner.run(onnx_path, "fidelity fp32" if progress else None, all_outputs=True)
        reference = next(iter(reference_outputs.values()))
        for precision in precisions:
            if precision == "fp32":
                what = "the reference" if not quantization else (
                    f"{_GIVEN_REFERENCE}, {quantization.precision} (there is no float model here)")
                results.append(compare("fp32", reference, reference, what, weights=weights))
                continue
            held_back: tuple[str, ...] = ()
            try:
                if precision == "fp16":
                    # the model a build ships: `build --precision fp16 --images DIR` range-passes on its images
                    prepared = prepare_fp16(
                        onnx_path, work_dir / f"{stem}.fidelity.fp16.onnx", keep_fp, range_images, spec, feeds
                    )
                    prepared = dataclasses.replace(prepared, notes=prepared.notes + ((range_note,) if range_note else ()))
                else:
                    options = Int8Options(
                        Path(calib), method, max_images, keep_fp, auto_keep, bias_correction=bias_correction,
                        feeds=feeds, cache_tag="fidelity", fidelity_target=fidelity_target, enforce_target=False,
                        quant_format=precision,  # int8 | fp8: FP8 is dequantized on the CPU, it checks the model
                    )
                    prepared = prepare_int8(onnx_path, options, spec, work_dir / f"{stem}.fidelity.{precision}.onnx")
                    overlap = _overlap(evaluation.paths, Path(calib))
                    held_back = prepared.held_back
                outputs = runner.run(prepared.path, f"fidelity {precision}" if progress else None, all_outputs=True)
            except OnnxModelError as exc:
                results.append(FidelityResult.could_not_measure(precision, len(evaluation), str(exc), weights))
                continue
            except (InputError, ConfigError):
                raise  # the user's to fix (a cache of another model, a bad option): exit 2, as for any verb
            except Exception as exc:  # noqa: BLE001 - a converter failing on this graph: a result, with its reason
                log.debug("preparing the %s ONNX failed", precision, exc_info=True)
                reason = " ".join(str(exc).split())[:300]
                why = f"preparing the {precision.upper()} ONNX failed ({type(exc).__name__}: {reason}); -v shows where"
                results.append(FidelityResult.could_not_measure(precision, len(evaluation), why, weights))
                continue
            output = next(iter(outputs.values()))
            result = compare(precision, reference, output, "; ".join(prepared.notes), weights=weights)
            result = with_task_figures(result, spec, reference_outputs, outputs)
            results.append(dataclasses.replace(result, held_back_files=held_back))
    if padding:
        results = [_with_note(r, padding) for r in results]
    return results, overlap


def _fp16_range_images(calib, images) -> tuple[Path, str]:
    """The folder FP16's range pass runs on: the calibration folder (a build's --images) if it has images, else the
    evaluation images; and a note when it is the latter."""
    from trtpipe.quant.images import find_images

    if calib is not None:
        try:
            find_images(calib, 1)
            return Path(calib), ""
        except InputError:
            pass
    return Path(images), f"FP16 range pass on the evaluation images ({calib} has none)"


def _with_note(result: FidelityResult, text: str) -> FidelityResult:
    import dataclasses

    return dataclasses.replace(result, note="; ".join(part for part in (result.note, text) if part))


def _overlap(evaluation: Sequence[Path], calib_dir: Path) -> int:
    """How many evaluation files have the same content as a calibration file."""
    import hashlib

    from trtpipe.quant.images import find_images

    try:
        calib = {hashlib.sha256(p.read_bytes()).digest() for p in find_images(calib_dir)}
    except InputError:
        return 0
    return sum(hashlib.sha256(p.read_bytes()).digest() in calib for p in evaluation)


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


def format_table(results: Sequence[FidelityResult]) -> str:
    """A readable table, one row per precision; '-' where a figure could not be measured, notes below."""
    header = (
        f"{'precision':<9} {'top-1':>7} {'top-1 conf':>10} {'top-5':>7} {'cosine':>8} {'max|err|':>9} "
        f"{'images':>6} {'failed':>6}"
    )
    lines = [header]

    def cell(value, width, fmt):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

    for r in results:
        lines.append(
            f"{r.precision:<9} {cell(r.top1_agreement, 7, '.3f')} {cell(r.top1_agreement_confident, 10, '.3f')} "
            f"{cell(r.top5_overlap, 7, '.3f')} {cell(r.cosine_mean, 8, '.5f')} {cell(r.max_abs_error, 9, '.4g')} "
            f"{r.images:>6} {cell(r.failed_images, 6, 'd')}"
        )
    if any(r.reference_boxes is not None for r in results):
        lines.append(
            f"{'detection':<9} {'precision':>9} {'recall':>7} {'F1':>7} {'mAP@0.5':>8} {'box IoU':>8} "
            f"{'boxes':>6} {'FP32':>6}  (FP32's detections as ground truth, IoU 0.5, same class, after NMS)"
        )
        for r in results:
            if r.reference_boxes is not None:
                lines.append(
                    f"{r.precision:<9} {cell(r.detection_precision, 9, '.3f')} {cell(r.detection_recall, 7, '.3f')} "
                    f"{cell(r.detection_f1, 7, '.3f')} {cell(r.detection_map50, 8, '.3f')} "
                    f"{cell(r.detection_mean_iou, 8, '.3f')} {cell(r.detected_boxes, 6, 'd')} {r.reference_boxes:>6}"
                )
    if any(r.reference_pixels is not None for r in results):
        lines.append(f"{'masks':<9} {'mIoU':>7} {'pixels':>8}  (argmax masks against FP32's)")
        for r in results:
            if r.reference_pixels is not None:
                lines.append(f"{r.precision:<9} {cell(r.mask_miou, 7, '.4f')} {cell(r.pixel_agreement, 8, '.5f')}")
    if any(len(r.outputs) > 1 for r in results):
        lines.append(f"{'output':<9} {'name':<24} {'cosine':>8} {'max|err|':>9} {'rel err':>8}")
        for r in results:
            for entry in r.outputs:
                lines.append(
                    f"{r.precision:<9} {entry['name'][:24]:<24} {cell(entry['cosine'], 8, '.5f')} "
                    f"{cell(entry['max_abs_error'], 9, '.4g')} {cell(entry['relative_error'], 8, '.2e')}"
                )
    for r in results:
        if r.note and r.note != "the reference":
            lines.append(f"  {r.precision}: {r.note}")
    return "\n".join(lines)


_GIVEN_REFERENCE = "the reference: the model as given"  # the fp32 row's note for a model that came quantized


def summary_line(results: Sequence[FidelityResult], seconds: float, json_path: str | Path | None = None) -> str:
    """One line: each precision's headline figure (or why it has none), the image count, the time, the JSON."""
    parts = []
    for r in results:
        if r.precision == "fp32":
            continue
        if not r.measured:
            parts.append(f"{r.precision} {CANNOT_MEASURE}")
            continue
        figures = [f"cosine {r.cosine_mean:.4f}"]
        if r.top1_agreement is not None:
            figures.insert(0, f"top-1 {r.top1_agreement:.3f}")
        if r.detection_f1 is not None:
            figures.insert(0, f"detection F1 {r.detection_f1:.3f} mAP@0.5 {r.detection_map50:.3f}")
        elif r.reference_boxes is not None:
            figures.insert(0, f"detection F1 not measurable ({r.reference_boxes} FP32 boxes)")
        if r.mask_miou is not None:
            figures.insert(0, f"mask mIoU {r.mask_miou:.4f}")
        if r.failed_images:
            figures.append(f"{r.failed_images} failed")
        parts.append(f"{r.precision} " + " ".join(figures))
    images = max((r.images for r in results), default=0)
    measured = ", ".join(parts) if parts else "fp32 only (nothing compared)"
    where = f"; wrote {json_path}" if json_path else ""
    random = " (random weights)" if any(r.weights == "random" for r in results) else ""
    # a model that came quantized is its own reference (see measure_fidelity): say so, not "vs FP32"
    given = any(r.precision == "fp32" and (r.note or "").startswith(_GIVEN_REFERENCE) for r in results)
    against = "the model as given" if given else "FP32"
    return f"fidelity vs {against} on {images} images{random}: {measured} in {seconds:.1f} s{where}"


def write_json(path: str | Path, results: Sequence[FidelityResult]) -> Path:
    """Writes one object per precision as strict JSON (no NaN/Infinity literals: missing figures are null)."""
    rows = [r.to_json() for r in results]
    return atomic_write_text(Path(path), json.dumps(rows, indent=2, allow_nan=False) + "\n")

