"""The precision step of a build: write the FP16 or Q/DQ INT8 ONNX that a strongly typed build parses.

``prepare_precision_onnx`` is what the builder calls for ``--precision fp16`` (explicit) and
``--precision int8`` (explicit). The INT8 path is: read the calibration images with the model's
preprocess spec -> reuse the calibration cache or calibrate (histograms in ONNX Runtime) -> optionally
rank layers by sensitivity and keep the worst in floating point -> correct the quantized layers'
biases for INT8's mean rounding shift (``bias_correction.py``) -> write Q/DQ -> check the placement.
"""

from __future__ import annotations

import difflib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trtpipe.errors import ConfigError, InputError, OnnxModelError
from trtpipe.io import atomic_output, sha256_file
from trtpipe.spec import BuildConfig, PreprocessSpec, preprocess_path_for

log = logging.getLogger("trtpipe")

CALIBRATION_BATCH = 8  # measured fastest on two cores: bigger batches spill the caches
SENSITIVITY_IMAGES = 32  # enough to rank layers; each layer costs one pass over them
BIAS_CORRECTION_IMAGES = 128  # per-channel means settle well before this; one FP32 pass over them


@dataclass(frozen=True)
class PreparedOnnx:
    """The ONNX a strongly typed build should parse, and how its precision was realised."""

    path: Path
    precision_realised: str  # e.g. "Q/DQ ONNX (entropy calibration, 48/50 layers INT8)"
    notes: tuple[str, ...]
    calibration_cache_sha256: str | None


@dataclass(frozen=True)
class Int8Options:
    """How to calibrate, for callers that do not have a BuildConfig (the calibrate/fidelity verbs)."""

    images: Path
    method: str = "entropy"
    max_images: int = 256
    keep_fp: tuple[str, ...] = ()
    auto_keep: int = 0
    cache: Path | None = None  # an explicit cache file (must belong to this model); None: beside the output
    bias_correction: bool = True  # subtract each INT8 layer's mean rounding shift from its bias
    # image batch -> {input name: array} for every network input (multi-input models, Python API; see quant/feeds.py)
    feeds: Callable | None = None
    # None: the build's cache <stem>.int8.calib.json; a verb's name (fidelity, sensitivity): its own
    # <stem>.<verb>.int8.calib.json, so measuring never rewrites the cache an engine was built with
    cache_tag: str | None = None

    @classmethod
    def from_config(cls, config: BuildConfig) -> "Int8Options":
        if config.calib_images is None:
            raise ConfigError(
                "--precision int8 needs calibration images, none given",
                "add --images calib_data/ (make calib-data fills it)",
            )
        return cls(
            Path(config.calib_images), config.calib_method, config.calib_max_images, config.keep_fp, config.auto_keep,
            bias_correction=config.bias_correction,
        )


def stem_of(onnx_path: str | Path) -> str:
    return Path(onnx_path).name.split(".")[0]


def prepare_precision_onnx(
    onnx_path: Path, config: BuildConfig, spec: PreprocessSpec | None, work_dir: Path
) -> PreparedOnnx:
    """Writes the FP16 ONNX or the Q/DQ INT8 ONNX for ``config.precision`` under ``work_dir``.

    FP16 goes to ``<stem>.fp16.onnx``; INT8 to ``<stem>.int8.onnx`` with its calibration cache
    ``<stem>.int8.calib.json`` (reused when the model, spec, images and method are unchanged).

    Raises:
        ConfigError: int8 without images, unknown --keep-fp names, a precision with nothing to prepare.
        InputError: missing preprocess spec, bad image folder, a cache from another model.
    """
    onnx_path, work_dir = Path(onnx_path), Path(work_dir)
    if config.precision == "fp16":
        return prepare_fp16(onnx_path, work_dir / f"{stem_of(onnx_path)}.fp16.onnx", config.keep_fp)
    if config.precision == "int8":
        return prepare_int8(onnx_path, Int8Options.from_config(config), spec, work_dir / f"{stem_of(onnx_path)}.int8.onnx")
    raise ConfigError(
        f"precision {config.precision!r} has no FP16/INT8 ONNX to prepare", "build fp32 from the ONNX as it is"
    )


def prepare_fp16(onnx_path: Path, output: Path, keep_nodes: tuple[str, ...] = ()) -> PreparedOnnx:
    from trtpipe.onnx.fp16 import write_fp16_onnx

    start = time.perf_counter()
    result = write_fp16_onnx(onnx_path, output, keep_nodes)
    log.info("wrote %s (FP16, %.1f MB) in %.1f s", output, output.stat().st_size / 1e6, time.perf_counter() - start)
    realised = f"strongly typed FP16 ONNX ({len(result.kept_fp32)} sensitive nodes FP32, FP32 I/O)"
    return PreparedOnnx(output, realised, result.notes, None)


def require_spec(onnx_path: Path, spec: PreprocessSpec | None) -> PreprocessSpec:
    """The model's preprocess spec: given, or read from ``<stem>.preprocess.json`` beside the ONNX."""
    if spec is not None:
        return spec
    path = preprocess_path_for(onnx_path)
    if not path.is_file():
        raise InputError(
            f"{onnx_path}: no preprocess spec ({path} is missing), so calibration images cannot be prepared "
            "as the model expects",
            f"export with `trtpipe export MODEL` (it writes the spec), or write {path.name} by hand "
            '({"model": "NAME", "height": 224, "width": 224, ...})',
        )
    return PreprocessSpec.load(path)


def prepare_int8(onnx_path: Path, options: Int8Options, spec: PreprocessSpec | None, output: Path) -> PreparedOnnx:
    """Calibrates (or reuses the cache), keeps sensitive layers in FP, writes the Q/DQ ONNX atomically."""
    import onnx

    from trtpipe.onnx.load import load_onnx
    from trtpipe.quant.qdq import count_qdq, insert_qdq

    start = time.perf_counter()
    spec = require_spec(onnx_path, spec)
    model = load_onnx(onnx_path, check=False)  # initializers listed as graph inputs are dropped there
    calibration = calibrate_model(onnx_path, model, spec, options, output.parent)
    plan = calibration.plan.without(calibration.kept)
    corrected = ""
    if calibration.shifts is not None and calibration.shifts.shifts:
        from trtpipe.quant.bias_correction import apply_bias_shifts

        model = apply_bias_shifts(model, plan, calibration.shifts)
        corrected = (
            f"bias correction: biases of the INT8 layers adjusted for their mean rounding shift "
            f"(measured on {calibration.shifts.images} calibration images)"
        )
    qdq_model = insert_qdq(model, plan, calibration.ranges)
    counts = count_qdq(qdq_model)
    if counts.dangling:
        raise OnnxModelError(  # a bug in placement, never a user error: say so
            f"{output.name}: Q/DQ placement left {len(counts.dangling)} dangling nodes ({counts.dangling[0]})",
            "this is a trtpipe bug; please report it with the model",
        )
    with atomic_output(output) as tmp:
        onnx.save(qdq_model, str(tmp))
    notes = [calibration.note, f"Q/DQ placement: {counts.summary()}"]
    if corrected:
        notes.append(corrected)
    if calibration.kept:
        notes.append(f"kept in floating point ({len(calibration.kept)}): {', '.join(calibration.kept)}")
    log.info(
        "wrote %s (Q/DQ INT8, %s) in %.1f s", output, counts.summary(), time.perf_counter() - start
    )
    realised = (
        f"Q/DQ ONNX ({options.method} calibration{', bias-corrected' if corrected else ''}, "
        f"{counts.quantized_layers}/{counts.total_layers} Conv/Gemm/MatMul INT8)"
    )
    return PreparedOnnx(output, realised, tuple(notes), sha256_file(calibration.cache_path))


@dataclass(frozen=True)
class Calibration:
    """What calibrating one model produced (or what its cache held)."""

    plan: object  # QdqPlan of every quantizable layer
    ranges: dict[str, float]
    kept: tuple[str, ...]  # layers kept in floating point (--keep-fp plus --auto-keep)
    cache_path: Path
    note: str
    shifts: object = None  # BiasShifts of every quantizable layer (None without bias correction)


def calibrate_model(onnx_path: Path, model, spec: PreprocessSpec, options: Int8Options, work_dir: Path) -> Calibration:
    """Activation ranges for ``model`` from the cache, or by calibrating on ``options.images``.

    Also resolves the layers kept in floating point: ``options.keep_fp`` (checked against the layer
    names) plus the ``options.auto_keep`` most sensitive layers (ranked once, then cached).
    """
    from trtpipe.onnx.load import onnx_sha256
    from trtpipe.quant.cache import CacheKey, default_cache_path, load_cache, save_cache, spec_sha256
    from trtpipe.quant.calibrate import collect_histograms
    from trtpipe.quant.feeds import network_feeder
    from trtpipe.quant.images import load_images
    from trtpipe.quant.qdq import default_opset, plan_qdq

    if default_opset(model) < 13:
        raise OnnxModelError(
            f"{onnx_path}: opset {default_opset(model)}, but per-channel Q/DQ needs opset 13 or newer",
            "export again with opset 17 (trtpipe export does), or upgrade it with onnx.version_converter",
        )
    plan = plan_qdq(model)
    if not plan.layers:
        raise OnnxModelError(
            f"{onnx_path}: no Conv/ConvTranspose/Gemm/MatMul with an activation input, nothing to run in INT8",
            "build it in fp16 instead",
        )
    _check_keep_names(options.keep_fp, plan.names)
    if options.max_images < 1:
        raise ConfigError(f"--max-images is {options.max_images}, expected at least 1", "e.g. --max-images 256")
    feeder = network_feeder(model, spec, onnx_path, options.feeds)  # before any work: a model images cannot feed
    batch = feeder.batch_size(CALIBRATION_BATCH)
    images = load_images(options.images, spec, options.max_images, min_images=batch).for_network(feeder)
    key = CacheKey(
        # onnx_sha256 covers external data files: new weights beside an unchanged .onnx mean calibrating again
        stem_of(onnx_path), onnx_sha256(onnx_path), spec_sha256(spec), images.sha256(), options.method, len(images)
    )
    cache_path = options.cache or default_cache_path(work_dir, stem_of(onnx_path), options.cache_tag)
    cached = load_cache(cache_path, key, explicit=options.cache is not None)
    hit = cached is not None and set(plan.activations) <= set(cached["ranges"])
    if hit:
        ranges = {k: float(v) for k, v in cached["ranges"].items()}
        note = f"calibration skipped: ranges reused from {cache_path} ({options.method}, {len(images)} images)"
    else:
        cached = {}
        result = collect_histograms(model, plan.activations, images.batches(batch), _progress(len(images), "calibrating"))
        ranges = result.ranges(options.method)
        note = f"calibrated {len(ranges)} activations on {result.images} images ({options.method}) in {result.seconds:.1f} s"
        note += "".join(f"; {text}" for text in images.notes)
    extra = {name: cached[name] for name in ("sensitivity", "bias_correction") if name in cached}
    changed = not hit
    shifts = None
    if options.bias_correction:
        shifts = _cached_shifts(model, plan, extra.get("bias_correction"))
        if shifts is None:
            shifts = _measure_shifts(model, plan, ranges, images, batch)
            extra["bias_correction"] = shifts.to_json()
            extra.pop("sensitivity", None)  # ranked with other biases: rank again when asked
            changed = True
    sensitivity = extra.get("sensitivity")
    if not isinstance(sensitivity, dict) or sensitivity.get("bias_corrected") != options.bias_correction:
        sensitivity = None  # a ranking made with(out) bias correction does not rank the other way
    if options.auto_keep > 0 and sensitivity is None:
        sensitivity = {"bias_corrected": options.bias_correction, "layers": _rank(model, plan, ranges, images, batch, shifts)}
        extra["sensitivity"] = sensitivity
        changed = True
    if changed:
        save_cache(cache_path, key, ranges, **extra)
    kept = list(options.keep_fp)
    # --auto-keep K: the K worst layers besides those --keep-fp already names
    ranking = (sensitivity or {}).get("layers", [])
    kept += [entry["name"] for entry in ranking if entry["name"] not in kept][: max(0, options.auto_keep)]
    return Calibration(plan, ranges, tuple(kept), cache_path, note, shifts)


def _cached_shifts(model, plan, entry):
    """The cached BiasShifts when they cover every layer of ``plan`` a bias can correct, else None."""
    from trtpipe.quant.bias_correction import BiasShifts, correction_targets

    try:
        shifts = BiasShifts.from_json(entry)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # absent or damaged: measure again
    return shifts if {t.layer for t in correction_targets(model, plan)} <= set(shifts.shifts) else None


def _measure_shifts(model, plan, ranges, images, batch):
    """Every quantized layer's mean INT8 output shift, on up to BIAS_CORRECTION_IMAGES spread over the set."""
    import numpy as np

    from trtpipe.quant.bias_correction import measure_bias_shifts

    indices = np.unique(np.linspace(0, len(images) - 1, min(len(images), BIAS_CORRECTION_IMAGES)).round().astype(int))
    batches = images.batches(batch, indices)
    return measure_bias_shifts(model, plan, ranges, batches, _progress(len(indices), "bias correction"))


def _rank(model, plan, ranges, images, batch, shifts=None) -> list[dict]:
    from trtpipe.quant.sensitivity import rank_layers

    held = images.split(0.25)[1][:SENSITIVITY_IMAGES]
    if len(held) == 0:
        held = list(range(min(len(images), SENSITIVITY_IMAGES)))
    batches = list(images.batches(batch * 2, held))
    ranking = rank_layers(model, plan, ranges, batches, _progress(len(plan.layers), "ranking layers"), shifts)
    return [{"name": r.name, "op_type": r.op_type, "error": r.error} for r in ranking]


def _check_keep_names(names: tuple[str, ...], known: tuple[str, ...]) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=3)
        raise ConfigError(
            f"--keep-fp names {unknown}, which are not quantizable layers of this model",
            f"did you mean {', '.join(close)}?" if close else "run `trtpipe sensitivity MODEL.onnx --images DIR` to list them",
        )


def _batch_size(model) -> int:
    """The calibration batch: CALIBRATION_BATCH for a dynamic batch axis, else the image input's fixed one."""
    from trtpipe.quant.feeds import real_inputs

    inputs = real_inputs(model)  # not graph.input[0]: weights listed as graph inputs may come first
    shape = inputs[0].shape if inputs else ()
    return int(shape[0]) if shape and shape[0] > 0 else CALIBRATION_BATCH


def _progress(total: int, description: str):
    """A tqdm bar's update function (None without tqdm or without a terminal)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, desc=description, leave=False, disable=None)
    return bar.update
