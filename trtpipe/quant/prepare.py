"""The precision step of a build: write the FP16 or Q/DQ INT8 ONNX that a strongly typed build parses.

``prepare_precision_onnx`` is what the builder calls for ``--precision fp16`` (explicit) and
``--precision int8`` (explicit). The INT8 path is: read the calibration images with the model's
preprocess spec and hold back a quarter of them -> reuse the calibration cache or calibrate on the rest
(histograms in ONNX Runtime) -> correct the quantized layers' biases for INT8's mean rounding shift
(``bias_correction.py``) -> measure the Q/DQ ONNX against FP32 on the held-back images and keep layers in
floating point, most harmful first, until it meets the fidelity target (``search.py``) -> write Q/DQ ->
check the placement. The FP16 path measures tensor ranges on the images first (``trtpipe.onnx.fp16``).
"""

from __future__ import annotations

import difflib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trtpipe.errors import ConfigError, InputError, OnnxModelError
from trtpipe.io import atomic_write_bytes, sha256_file
from trtpipe.spec import BuildConfig, PreprocessSpec, preprocess_path_for, resolve_fidelity_target

log = logging.getLogger("trtpipe")

CALIBRATION_BATCH = 8  # measured fastest on two cores: bigger batches spill the caches
SENSITIVITY_IMAGES = 16  # enough to order layers for the search (which measures each it keeps); one pass per layer
BIAS_CORRECTION_IMAGES = 128  # per-channel means settle well before this; one FP32 pass over them
CHECK_BATCH = 16  # held-back images per ONNX Runtime call in the fidelity check
QDQ_MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the axis attribute)


@dataclass(frozen=True)
class PreparedOnnx:
    """The ONNX a strongly typed build should parse, and how its precision was realised."""

    path: Path
    precision_realised: str  # e.g. "Q/DQ ONNX (entropy calibration, 48/50 layers INT8)"
    notes: tuple[str, ...]
    calibration_cache_sha256: str | None
    fidelity: dict | None = None  # int8: SearchResult.to_json() (target, figures, image counts, layers kept)
    summary: str = ""  # one clause for the closing line (int8: the fidelity check; fp16: the range check)
    seconds: float = 0.0  # preparing it: calibration, fidelity check and search, or the FP16 conversion
    rewrites: tuple[dict, ...] = ()  # done to the model first (an opset conversion), as EngineSidecar.onnx_rewrites
    held_back: tuple[str, ...] = ()  # int8: the calibration images held back for the fidelity check (file names)


@dataclass(frozen=True)
class Int8Options:
    """How to calibrate, for callers that do not have a BuildConfig (the calibrate/fidelity verbs)."""

    images: Path
    method: str = "percentile"
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
    # what the Q/DQ ONNX must keep of FP32 on the held-back images (BuildConfig.fidelity_target): auto | none | text
    fidelity_target: str = "auto"
    keep_precision: str = "auto"  # what kept layers run in: auto (FP16 where that meets the target) | fp16 | fp32
    max_fp_share: float = 0.25  # the search keeps at most this share of the quantizable layers in floating point
    # False: measure against the target and report, but neither search nor fail (the fidelity verb measures)
    enforce_target: bool = True
    quant_format: str = "int8"  # int8 | fp8 (E4M3 Q/DQ at opset 19: Ada, Hopper, Blackwell), see qdq.QUANT_FORMATS

    @classmethod
    def from_config(cls, config: BuildConfig) -> "Int8Options":
        if config.calib_images is None:
            raise ConfigError(
                "--precision int8 needs calibration images, none given",
                "add --images calib_data/ (make calib-data fills it)",
            )
        return cls(
            Path(config.calib_images), config.calib_method, config.calib_max_images, config.keep_fp, config.auto_keep,
            bias_correction=config.bias_correction, fidelity_target=config.fidelity_target,
            keep_precision=config.keep_precision, max_fp_share=config.max_fp_share,
            quant_format="fp8" if config.precision == "fp8" else "int8",
        )


def stem_of(onnx_path: str | Path) -> str:
    return Path(onnx_path).name.split(".")[0]


def prepare_precision_onnx(
    onnx_path: Path, config: BuildConfig, spec: PreprocessSpec | None, work_dir: Path, name: str | None = None
) -> PreparedOnnx:
    """Writes the FP16 ONNX or the Q/DQ INT8 ONNX for ``config.precision`` under ``work_dir``.

    FP16 goes to ``<name>.fp16.onnx``; INT8 to ``<name>.int8.onnx`` (``name`` defaults to the ONNX's stem), with
    the calibration cache ``<stem>.int8.calib.json`` (reused when the model, spec, images and method are unchanged,
    whatever ``name`` is).

    Raises:
        ConfigError: int8 without images, unknown --keep-fp names, a precision with nothing to prepare.
        InputError: missing preprocess spec, bad image folder, a cache from another model.
    """
    onnx_path, work_dir = Path(onnx_path), Path(work_dir)
    name = name or stem_of(onnx_path)
    if config.precision == "fp16":
        images = Path(config.calib_images) if config.calib_images else None
        return prepare_fp16(onnx_path, work_dir / f"{name}.fp16.onnx", config.keep_fp, images, spec)
    if config.precision in ("int8", "fp8"):
        return prepare_int8(onnx_path, Int8Options.from_config(config), spec, work_dir / f"{name}.{config.precision}.onnx")
    raise ConfigError(
        f"precision {config.precision!r} has no FP16/INT8 ONNX to prepare", "build fp32 from the ONNX as it is"
    )


def prepare_fp16(
    onnx_path: Path,
    output: Path,
    keep_nodes: tuple[str, ...] = (),
    images: Path | None = None,
    spec: PreprocessSpec | None = None,
    feeds: Callable | None = None,
) -> PreparedOnnx:
    """Writes the FP16 ONNX; with ``images``, an FP32 range pass over them first keeps FP32 what FP16 cannot hold.

    Args:
        images: a folder of images (the calibration images do); up to ``RANGE_IMAGES`` are run. None: no
            range pass (the notes say so).
        spec: the preprocess spec (default: beside the ONNX); needed with ``images``.
        feeds: image batch -> feed dict, for a multi-input model (see ``quant/feeds.py``).
    """
    from trtpipe.onnx.fp16 import RANGE_BATCH, RANGE_IMAGES, write_fp16_onnx
    from trtpipe.onnx.load import check_ir_version, load_onnx

    start = time.perf_counter()
    # the converter and its checker are onnx's: a newer IR version is refused here, naming it, not in their traceback
    check_ir_version(onnx_path, load_onnx(onnx_path, check=False, load_weights=False), "the FP16 conversion")
    range_batches = None
    if images is not None:
        from trtpipe.quant.feeds import network_feeder
        from trtpipe.quant.images import load_images

        spec = require_spec(onnx_path, spec)

        def range_batches(model):
            feeder = network_feeder(model, spec, onnx_path, feeds)
            loaded = load_images(images, spec, RANGE_IMAGES, purpose="FP16 range", progress=False).for_network(feeder)
            return loaded.batches(feeder.batch_size(RANGE_BATCH), ragged="pad")

    result = write_fp16_onnx(onnx_path, output, keep_nodes, range_batches, _progress(RANGE_IMAGES, "FP16 range pass") if images else None)
    log.info("wrote %s (FP16, %.1f MB) in %.1f s", output, output.stat().st_size / 1e6, time.perf_counter() - start)
    realised = f"strongly typed FP16 ONNX ({len(result.kept_fp32)} nodes FP32, FP32 I/O)"
    if result.range_images:
        summary = (
            f"FP16 range check on {result.range_images} images: "
            + (f"{len(result.range_kept)} nodes kept FP32" if result.range_kept else "every tensor fits")
        )
    else:
        summary = "FP16 ranges unchecked (no --images)"
    return PreparedOnnx(output, realised, result.notes, None, summary=summary, seconds=time.perf_counter() - start)


def require_spec(onnx_path: Path, spec: PreprocessSpec | None) -> PreprocessSpec:
    """The model's preprocess spec: given, or read from ``<stem>.preprocess.json`` beside the ONNX.

    The library does not guess: callers that may derive one pass ``trtpipe.presets.resolve_spec(onnx_path)`` (the
    CLI does, with the user's --preset and flags).
    """
    if spec is not None:
        return spec
    path = preprocess_path_for(onnx_path)
    if not path.is_file():
        raise InputError(
            f"{onnx_path}: no preprocess spec ({path} is missing), so calibration images cannot be prepared "
            "as the model expects",
            f"export with `trtpipe export MODEL` (it writes the spec), write {path.name} with `trtpipe spec "
            f"{onnx_path} --preset NAME`, or pass spec=trtpipe.presets.resolve_spec(path)",
        )
    return PreprocessSpec.load(path)


def prepare_int8(onnx_path: Path, options: Int8Options, spec: PreprocessSpec | None, output: Path) -> PreparedOnnx:
    """Calibrates (or reuses the cache), meets the fidelity target, writes the Q/DQ ONNX atomically.

    A rebuild with nothing changed reads ranges, bias shifts and the search result from the cache, recomputes
    nothing, and leaves the cache and an identical ``output`` untouched.

    Raises:
        FidelityTargetError: the target cannot be met within the cap on kept layers, or cannot be measured
            (nothing is written but the calibration cache, so a second try with other options is quick).
        ConfigError, InputError, OnnxModelError: as :func:`calibrate_model`.
    """
    from trtpipe.onnx.load import load_onnx
    from trtpipe.quant.qdq import count_qdq
    from trtpipe.quant.search import MIN_HELD_BACK, FidelityTargetError

    from trtpipe.quant.qdq import QUANT_FORMATS

    start = time.perf_counter()
    fmt = QUANT_FORMATS[options.quant_format]
    spec = require_spec(onnx_path, spec)
    target = resolve_fidelity_target(options.fidelity_target, spec.task)
    model = load_onnx(onnx_path, check=False)  # initializers listed as graph inputs are dropped there
    model, upgraded = _at_least_opset(onnx_path, model, fmt)
    calibration = calibrate_model(onnx_path, model, spec, options, output.parent)
    model = calibration.model  # converted to opset 13+ where it was older
    if target is None:
        check = _unchecked(calibration, options, "--fidelity-target none")
    elif len(calibration.held_back_indices) == 0:  # only when not enforced, see calibrate_model
        check = _unchecked(
            calibration, options,
            f"{len(calibration.images)} calibration images are too few to hold back {MIN_HELD_BACK} for the check",
        )
    else:
        check = _check_fidelity(onnx_path, model, spec, options, calibration, target)
    kept, keep_precision, fp32_layers = check.kept, check.keep_precision, check.fp32_layers
    calibration.save()
    if check.enforced and not check.met:
        raise FidelityTargetError(
            f"{onnx_path.name}: {fmt.label} misses the fidelity target {check.target} on {check.held_back_images} held-back "
            f"images: at best {check.figures_text()} with {len(check.kept)} of {check.quantizable_layers} layers in "
            f"floating point (the cap is {check.cap}, --max-fp-share {options.max_fp_share:g}); nothing was written",
            # more kept layers helps only where the search stopped at the cap, not where keeping more stopped helping
            (f"allow more kept layers (--max-fp-share {max(0.5, min(1.0, 2 * options.max_fp_share)):g}), "
             if len(check.kept) >= check.cap and options.max_fp_share < 1.0 else "") + f"lower the target (--fidelity-target {_lower(check.target)}), build --precision fp16, or --fidelity-target "
            f"none to build the {fmt.label} engine unchecked",
        )
    qdq_model = build_qdq_model(model, calibration, kept, keep_precision, fp32_layers)
    counts = count_qdq(qdq_model)
    if counts.dangling:
        raise OnnxModelError(  # a bug in placement, never a user error: say so
            f"{output.name}: Q/DQ placement left {len(counts.dangling)} dangling nodes ({counts.dangling[0]})",
            "this is a trtpipe bug; please report it with the model",
        )
    written = _save_if_changed(qdq_model, output)
    corrected = calibration.shifts is not None and bool(calibration.shifts.shifts)
    notes = [calibration.note, f"Q/DQ placement ({fmt.label}): {counts.summary()}"] + ([upgraded] if upgraded else [])
    if corrected:
        notes.append(
            f"bias correction: biases of the {fmt.label} layers adjusted for their mean rounding shift "
            f"(measured on {calibration.shifts.images} calibration images)"
        )
    if kept:
        where = keep_precision.upper() + (f", FP32 for {', '.join(fp32_layers)}" if fp32_layers else "")
        notes.append(f"kept in floating point ({len(kept)}, {where}): {', '.join(kept)}")
    if check.note:
        notes.append(check.note)
    seconds = time.perf_counter() - start
    log.info("%s %s (Q/DQ %s, %s) in %.1f s", "wrote" if written else "unchanged:", output, fmt.label, counts.summary(),
             seconds)
    realised = (
        f"Q/DQ ONNX ({options.method} calibration{', bias-corrected' if corrected else ''}, "
        f"{counts.quantized_layers}/{counts.total_layers} Conv/Gemm/MatMul {fmt.label}"
        + (f", {len(kept)} layers {keep_precision.upper()}" if kept else "")
        + ")"
    )
    return PreparedOnnx(
        output, realised, tuple(notes), sha256_file(calibration.cache_path), fidelity=check.to_json(),
        summary=check.summary(), seconds=seconds, rewrites=calibration.rewrites,
        held_back=tuple(str(calibration.images.paths[i]) for i in calibration.held_back_indices),
    )


def _lower(target_text: str) -> str:
    """A lower target of the same figures for a Hint: ``f1>=0.95`` -> ``f1=0.9``, cosine -> 0.995."""
    from trtpipe.spec import FidelityTarget

    bounds = FidelityTarget.parse(target_text).bounds
    return ",".join(f"{name}={0.995 if name == 'cosine' else round(value - 0.05, 2):g}" for name, value in bounds.items())


def _unchecked(calibration: "Calibration", options: Int8Options, why: str):
    """The SearchResult of a model that is not compared with FP32 (no target, or no images to hold back)."""
    from trtpipe.quant.search import SearchResult

    return SearchResult(
        target=None, met=None, enforced=False, kept=calibration.kept, forced=calibration.kept,
        keep_precision="fp32" if options.keep_precision == "fp32" else "fp16",  # nothing measured to choose by
        fp32_layers=(), figures={}, held_back_images=0, calibration_images=len(calibration.calibration_indices),
        quantizable_layers=len(calibration.plan.layers), cap=0,
        note=f"INT8 fidelity unchecked ({why}): this model was not compared with FP32",
    )


def _at_least_opset(onnx_path: Path, model, fmt):
    """``model`` converted to ``fmt.min_opset`` when it is below (FP8 Q/DQ need opset 19), and a note saying so.

    The conversion is ``onnx.version_converter``'s (:func:`trtpipe.onnx.opset.upgrade_opset`); the converted graph is
    what is planned, calibrated and measured, so every figure belongs to it. INT8's own minimum (13) is
    :func:`calibrate_model`'s, which also compares a conversion's outputs with the original's.

    Raises:
        OnnxModelError: no conversion to ``fmt.min_opset`` works (naming the op that blocked it).
    """
    from trtpipe.onnx.opset import upgrade_opset

    if fmt.min_opset <= 13:
        return model, ""
    converted, conversion = upgrade_opset(model, fmt.min_opset, str(onnx_path), f"{fmt.label} Q/DQ needs opset "
                                          f"{fmt.min_opset}", target=fmt.min_opset)
    if conversion is None:
        return model, ""
    return converted, f"{conversion.summary()}: {fmt.label} Q/DQ need opset {fmt.min_opset}"


def _save_if_changed(model, output: Path) -> bool:
    """Writes ``model`` to ``output`` atomically unless it holds these bytes already; returns whether it wrote."""
    data = model.SerializeToString()
    if output.is_file() and output.stat().st_size == len(data) and output.read_bytes() == data:
        return False  # a rebuild with nothing changed rewrites nothing (and keeps the file's time)
    atomic_write_bytes(output, data)
    return True


def build_qdq_model(model, calibration: "Calibration", kept, keep_precision: str, fp32_layers=()):
    """The Q/DQ model with ``kept`` layers in floating point (FP16 or FP32 as ``keep_precision`` says).

    The same function makes every model the fidelity check measures and the one written, so the figures
    belong to the file. ``fp32_layers`` stay FP32 even when the kept layers run in FP16.
    """
    from trtpipe.quant.bias_correction import apply_bias_shifts
    from trtpipe.quant.qdq import insert_qdq

    plan = calibration.plan.without(kept)
    source = model
    if calibration.shifts is not None and calibration.shifts.shifts:
        source = apply_bias_shifts(model, plan, calibration.shifts)
    half = [name for name in kept if name not in set(fp32_layers)] if keep_precision == "fp16" else []
    return insert_qdq(source, plan, calibration.ranges, calibration.plan.only(half).layers, fmt=calibration.fmt)


@dataclass
class Calibration:
    """What calibrating one model produced (or what its cache held), and the images it was made on."""

    plan: object  # QdqPlan of every quantizable layer
    ranges: dict[str, float]
    kept: tuple[str, ...]  # layers kept in floating point (--keep-fp plus --auto-keep)
    cache_path: Path
    note: str
    shifts: object = None  # BiasShifts of every quantizable layer (None without bias correction)
    images: object = None  # ImageSet (for the network)
    calibration_indices: object = None  # images the ranges, shifts and ranking were made on
    held_back_indices: object = None  # images held back for the fidelity check (never calibrated on)
    batch: int = CALIBRATION_BATCH
    key: object = None  # CacheKey
    entries: dict | None = None  # the cache's entries besides the ranges (bias_correction, sensitivity, ...)
    changed: bool = False  # entries differ from the cache file: save() writes it
    ranker: Callable | None = None  # () -> sensitivity entries, worst first (computes and caches the ranking)
    fmt: object = None  # the QuantFormat (qdq.INT8, qdq.FP8_E4M3) every Q/DQ model of this calibration is written in
    model: object = None  # the onnx.ModelProto calibrated: the given one, or its opset conversion
    rewrites: tuple[dict, ...] = ()  # what was done to the given model first (the opset conversion)

    def ranking(self) -> list[str]:
        """Every layer, most INT8-sensitive first (ranked on calibration images once, then cached)."""
        sensitivity = self.entries.get("sensitivity")
        if sensitivity is None:
            sensitivity = {"bias_corrected": self.shifts is not None, "layers": self.ranker()}
            self.entries["sensitivity"] = sensitivity
            self.changed = True
        return [entry["name"] for entry in sensitivity["layers"]]

    def remember(self, name: str, value) -> None:
        """Stores ``value`` as cache entry ``name`` (written by :meth:`save` if it differs)."""
        if self.entries.get(name) != value:
            self.entries[name] = value
            self.changed = True

    def save(self) -> None:
        """Writes the cache if anything in it changed (a rebuild with nothing changed writes nothing)."""
        from trtpipe.quant.cache import save_cache

        if self.changed:
            save_cache(self.cache_path, self.key, self.ranges, **self.entries)
            self.changed = False


def calibrate_model(onnx_path: Path, model, spec: PreprocessSpec, options: Int8Options, work_dir: Path) -> Calibration:
    """Activation ranges for ``model`` from the cache, or by calibrating on ``options.images``.

    With a fidelity target (``options.fidelity_target`` not ``none``), every fourth image is held back for the
    check and the ranges, bias shifts and ranking are made on the others. Also resolves the layers kept in
    floating point: ``options.keep_fp`` (checked against the layer names) plus the ``options.auto_keep`` most
    sensitive layers (ranked once, then cached). The cache is written here when calibration ran; later entries
    (the ranking, the fidelity search) are written by :meth:`Calibration.save`.

    Raises:
        ConfigError: unknown --keep-fp names; too few images to hold some back.
        InputError: a bad image folder, a cache from another model, a model images cannot feed.
        OnnxModelError: a model that came quantized (see :func:`refuse_requantizing`), an IR version onnx cannot
            read, an opset below 13 that onnx.version_converter cannot convert (or whose conversion changes the
            outputs), nothing to quantize, ONNX Runtime cannot run the model.
    """
    from trtpipe.presets import warn_assumed_calibration

    warn_assumed_calibration(spec, onnx_path)  # ranges measured on a guessed normalisation: said loudly, once
    import numpy as np

    from trtpipe.onnx.load import onnx_sha256
    from trtpipe.quant.cache import CacheKey, default_cache_path, load_cache, save_cache, spec_sha256
    from trtpipe.quant.calibrate import collect_histograms
    from trtpipe.quant.feeds import network_feeder
    from trtpipe.quant.images import load_images
    from trtpipe.onnx.opset import upgrade_opset, with_error
    from trtpipe.quant.qdq import QUANT_FORMATS, plan_qdq
    from trtpipe.quant.search import HELD_BACK, MIN_HELD_BACK

    refuse_requantizing(onnx_path, model, "calibration")
    original = model
    model, conversion = upgrade_opset(model, QDQ_MIN_OPSET, str(onnx_path), f"per-channel Q/DQ needs opset {QDQ_MIN_OPSET}")
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
    hold_back = resolve_fidelity_target(options.fidelity_target) is not None
    calibrate_on, held = images.split(HELD_BACK) if hold_back else (np.arange(len(images)), np.arange(0))
    too_few = len(held) < MIN_HELD_BACK or len(calibrate_on) < batch
    if hold_back and too_few and not options.enforce_target:  # measuring only: calibrate on all, check nothing
        hold_back, calibrate_on, held = False, np.arange(len(images)), np.arange(0)
    elif hold_back and too_few:
        raise ConfigError(
            f"{options.images}: {len(images)} usable images leave {len(held)} to hold back for the INT8 fidelity "
            f"check (a quarter) and {len(calibrate_on)} to calibrate on, expected at least {MIN_HELD_BACK} and {batch}",
            f"give at least {4 * MIN_HELD_BACK} images (--max-images, or more in the folder), or "
            "--fidelity-target none to calibrate on all of them and leave the engine unchecked",
        )
    key = CacheKey(
        # onnx_sha256 covers external data files: new weights beside an unchanged .onnx mean calibrating again
        stem_of(onnx_path), onnx_sha256(onnx_path), spec_sha256(spec), images.sha256(), options.method, len(images)
    )
    # the images the ranges were made on: a cache made on all images is not one made on three quarters
    held_back = {"share": HELD_BACK, "images": int(len(held))} if hold_back else None
    fmt = QUANT_FORMATS[options.quant_format]
    cache_path = options.cache or default_cache_path(work_dir, stem_of(onnx_path), options.cache_tag, fmt.name)
    cached = load_cache(cache_path, key, explicit=options.cache is not None)
    hit = cached is not None and set(plan.activations) <= set(cached["ranges"]) and cached.get("held_back") == held_back
    used = len(calibrate_on)
    if hit:
        ranges = {k: float(v) for k, v in cached["ranges"].items()}
        note = f"calibration skipped: ranges reused from {cache_path} ({options.method}, {used} images)"
    else:
        cached = {}
        result = collect_histograms(
            model, plan.activations, images.batches(batch, calibrate_on), _progress(used, "calibrating")
        )
        ranges = result.ranges(options.method)
        note = f"calibrated {len(ranges)} activations on {result.images} images ({options.method}) in {result.seconds:.1f} s"
        if hold_back:
            note += f"; {len(held)} more held back for the fidelity check"
        note += "".join(f"; {text}" for text in images.notes)
    extra = {name: cached[name] for name in ("sensitivity", "bias_correction", "fp16_unsafe", "fidelity_search") if name in cached}
    extra["held_back"] = held_back
    changed = not hit
    shifts = None
    if options.bias_correction:
        shifts = _cached_shifts(model, plan, extra.get("bias_correction"))
        if shifts is None:
            shifts = _measure_shifts(model, plan, ranges, images, batch, calibrate_on, fmt)
            extra["bias_correction"] = shifts.to_json()
            for stale in ("sensitivity", "fidelity_search"):  # made with other biases
                extra.pop(stale, None)
            changed = True
    sensitivity = extra.get("sensitivity")
    if not isinstance(sensitivity, dict) or sensitivity.get("bias_corrected") != options.bias_correction:
        extra.pop("sensitivity", None)  # a ranking made with(out) bias correction does not rank the other way

    def ranker() -> list[dict]:
        return _rank(model, plan, ranges, images, batch, shifts, calibrate_on, fmt)

    rewrites = ()
    if conversion is not None:  # checked on the images before anything is built from it
        conversion = with_error(conversion, original, model, images.batches(batch, calibrate_on))
        log.info("%s: %s", onnx_path, conversion.summary())
        note = f"{conversion.summary()}; {note}"
        rewrites = (conversion.to_json(),)
    calibration = Calibration(
        plan, ranges, (), cache_path, note, shifts, images, calibrate_on, held, batch, key, extra, changed, ranker,
        fmt, model, rewrites,
    )
    if changed:
        save_cache(cache_path, key, ranges, **extra)  # ranges are the expensive part: keep them even if later steps fail
        calibration.changed = False
    kept = list(options.keep_fp)
    if options.auto_keep > 0:  # --auto-keep K: the K worst layers besides those --keep-fp already names
        kept += [name for name in calibration.ranking() if name not in kept][: options.auto_keep]
    calibration.kept = tuple(kept)
    return calibration


def refuse_requantizing(onnx_path: Path, model, verb: str) -> None:
    """Refuses, before any work, a model calibration must not touch: an IR version the installed onnx cannot read,
    an input axis of fixed size 0, a TensorRT plugin node ONNX Runtime cannot run, or a model that came quantized (Q/DQ of its own): calibrating it again would quantize it twice (Q -> DQ -> Q -> DQ,
    or a DequantizeLinear of FP8/INT4 weights left dangling), and what TensorRT cannot build (an asymmetric zero point,
    a Q/DQ type it lacks) is said as the build says it.

    Raises:
        OnnxModelError: naming the IR version, or the Q/DQ nodes and the model's precision.
    """
    from trtpipe.onnx.load import check_ir_version, check_no_empty_axes, check_no_plugin_nodes
    from trtpipe.onnx.quantized import already_quantized_error, check_tensorrt_takes, scan_quantization

    check_ir_version(onnx_path, model, verb)
    check_no_empty_axes(onnx_path, model)
    check_no_plugin_nodes(onnx_path, model, verb)
    quantization = scan_quantization(model)
    if quantization:
        check_tensorrt_takes(quantization, onnx_path, verb)
        raise already_quantized_error(quantization, onnx_path, verb)


def _check_fidelity(onnx_path: Path, model, spec: PreprocessSpec, options: Int8Options, calibration: Calibration, target):
    """The fidelity check on the held-back images, from the cache or measured (with the search): a SearchResult.

    Raises:
        FidelityTargetError: the held-back images cannot be run through the Q/DQ model or its FP32 reference.
    """
    import dataclasses
    import tempfile

    import numpy as np
    import onnx

    from trtpipe.quant.fidelity import IsolatedRunner, compare, with_task_figures
    from trtpipe.quant.search import (
        FidelityTargetError, SearchResult, Step, cap_for, figures_of, meets, search_kept_layers,
    )
    from trtpipe.quant.task_fidelity import measure_for

    search = not spec.random_weights  # a random network's outputs carry nothing to preserve: measure only
    enforced = options.enforce_target and search
    cap = cap_for(len(calibration.plan.layers), options.max_fp_share)
    search_key = {
        "target": str(target), "search": search, "enforced": enforced, "keep_precision": options.keep_precision,
        "max_fp_share": options.max_fp_share, "forced": list(calibration.kept), "bias_correction": options.bias_correction,
    }
    cached = calibration.entries.get("fidelity_search")
    if isinstance(cached, dict) and cached.get("key") == search_key:
        try:
            return dataclasses.replace(SearchResult.from_json(cached["result"]), reused=True)
        except (KeyError, TypeError, ValueError):
            pass  # damaged: measure again
    start = time.perf_counter()
    fp32_layers = {} if options.keep_precision == "fp32" else _fp16_unsafe_layers(model, calibration)
    held = calibration.images
    held = dataclasses.replace(held, paths=[held.paths[i] for i in calibration.held_back_indices],
                               resized=held.resized[calibration.held_back_indices])
    indices = np.arange(len(held))
    bar = _bar(1 + (2 * cap if search else 0), "INT8 fidelity check")
    try:
        with tempfile.TemporaryDirectory(prefix="trtpipe-int8-") as folder, \
                IsolatedRunner(held, indices, held.feeder.batch_size(CHECK_BATCH) if held.feeder else CHECK_BATCH) as runner:
            task = measure_for(spec.task) is not None  # detection, segmentation: every output, the task's measure
            reference_outputs = runner.run(onnx_path, all_outputs=task)
            reference = next(iter(reference_outputs.values())) if task else reference_outputs
            candidate = Path(folder) / f"{stem_of(onnx_path)}.candidate.int8.onnx"

            def measure(kept: tuple[str, ...], precision: str) -> dict:
                onnx.save(build_qdq_model(model, calibration, kept, precision, tuple(fp32_layers)), str(candidate))
                outputs = runner.run(candidate, all_outputs=task)
                result = compare("int8", reference, next(iter(outputs.values())) if task else outputs, weights=spec.weights)
                if not result.measured:
                    raise FidelityTargetError(
                        f"{onnx_path.name}: the INT8 fidelity check could not compare the Q/DQ model with FP32: "
                        f"{result.note}", "--fidelity-target none builds it unchecked",
                    )
                if task:
                    result = with_task_figures(result, spec, reference_outputs, outputs)
                return figures_of(result)

            precision = "fp32" if options.keep_precision == "fp32" else "fp16"
            note = ""
            unmeasurable = _task_unmeasurable(spec, target, reference_outputs) if task else ""
            if unmeasurable and enforced:
                raise FidelityTargetError(
                    f"{onnx_path.name}: the INT8 fidelity target {target} cannot be checked on the {len(held)} "
                    f"held-back calibration images: {unmeasurable}; nothing was written",
                    f"calibrate on images that show what {onnx_path.name} detects or segments (more of them: "
                    "--max-images), or give a target it can measure (--fidelity-target cosine=0.999)",
                )
            if unmeasurable:  # measuring only (the fidelity verb): the figures as they are, no search
                kept = calibration.kept
                figures = measure(kept, precision)
                steps = (Step(None, True, figures),)
                note = f"not searched: {unmeasurable}"
            elif search:
                kept, figures, steps = search_kept_layers(
                    target, calibration.ranking, lambda k: measure(k, precision), calibration.kept, cap, bar
                )
                if not meets(target, figures)[0] and options.keep_precision == "auto" and kept:
                    in_fp32 = measure(kept, "fp32")
                    if meets(target, in_fp32)[0]:
                        note = (
                            f"kept layers run in FP32: in FP16 they reached {_figures(figures)}, short of the target; "
                            f"in FP32 {_figures(in_fp32)}"
                        )
                        precision, figures = "fp32", in_fp32
                    steps += (Step("(the same layers in FP32)", precision == "fp32", in_fp32),)
            else:
                kept = calibration.kept
                figures = measure(kept, precision)
                steps = (Step(None, True, figures),)
                note = (
                    "the model has RANDOM WEIGHTS: fidelity measured, no layers searched and the target not enforced "
                    "(a random network's outputs carry nothing to preserve)"
                )
    except OnnxModelError as exc:
        raise FidelityTargetError(
            f"{onnx_path.name}: the INT8 fidelity check could not run: {exc.message}",
            "--fidelity-target none builds the engine unchecked; " + exc.hint,
        ) from None
    finally:
        if bar is not None:
            bar.close()
    met, unchecked = meets(target, figures)
    result = SearchResult(
        target=str(target), met=met, enforced=enforced, kept=tuple(kept), forced=calibration.kept,
        keep_precision=precision, fp32_layers=tuple(name for name in kept if name in fp32_layers) if precision == "fp16" else (),
        figures=figures, held_back_images=len(held), calibration_images=len(calibration.calibration_indices),
        quantizable_layers=len(calibration.plan.layers), cap=cap, steps=tuple(steps),
        seconds=time.perf_counter() - start, note=note, unchecked=unchecked,
    )
    calibration.remember("fidelity_search", {"key": search_key, "result": result.to_json()})
    return result


def _task_unmeasurable(spec: PreprocessSpec, target, reference_outputs) -> str:
    """Why a task bound of ``target`` cannot be measured on these images (FP32 itself detects too few boxes), or ''.

    Raises:
        InputError: the spec's head cannot decode the model's outputs.
    """
    from trtpipe.quant.task_fidelity import task_figures
    from trtpipe.spec import FIDELITY_METRICS, REQUIRED_METRICS

    own = task_figures(spec, reference_outputs, reference_outputs)  # FP32 against itself: what it can show
    missing = [FIDELITY_METRICS[name][1] for name in target.bounds
               if name in REQUIRED_METRICS and own.figures.get(FIDELITY_METRICS[name][0]) is None]
    return f"{', '.join(missing)} not measurable ({own.note})" if missing else ""


def _figures(figures) -> str:
    cosine = figures.get("cosine_mean")
    top1 = figures.get("top1_agreement")
    return f"cosine {cosine:.5f}" + (f", top-1 {top1:.3f}" if top1 is not None else "")


def _fp16_unsafe_layers(model, calibration: Calibration) -> dict[str, str]:
    """Quantizable layers whose input or output FP16 cannot hold (measured on calibration images, cached)."""
    import numpy as np

    from trtpipe.onnx.fp16 import RANGE_BATCH, RANGE_IMAGES, measure_ranges, range_kept_nodes
    from trtpipe.quant.qdq import layer_name

    cached = calibration.entries.get("fp16_unsafe")
    if isinstance(cached, dict):
        return dict(cached)
    indices = calibration.calibration_indices
    spread = indices[np.unique(np.linspace(0, len(indices) - 1, min(len(indices), RANGE_IMAGES)).round().astype(int))]
    batch = calibration.images.feeder.batch_size(RANGE_BATCH) if calibration.images.feeder else RANGE_BATCH
    ranges, _ = measure_ranges(model, calibration.images.batches(batch, spread, ragged="pad"))
    named = type(model)()
    named.CopyFrom(model)
    for index, node in enumerate(named.graph.node):
        node.name = layer_name(node, index)  # the names plan_qdq gives layers
    why, _ = range_kept_nodes(named, ranges)
    unsafe = {name: why[name] for name in calibration.plan.names if name in why}
    calibration.remember("fp16_unsafe", unsafe)
    return unsafe


def _cached_shifts(model, plan, entry):
    """The cached BiasShifts when they cover every layer of ``plan`` a bias can correct, else None."""
    from trtpipe.quant.bias_correction import BiasShifts, correction_targets

    try:
        shifts = BiasShifts.from_json(entry)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # absent or damaged: measure again
    return shifts if {t.layer for t in correction_targets(model, plan)} <= set(shifts.shifts) else None


def _spread(indices, count: int):
    """``count`` of ``indices`` (or all), evenly spread over them."""
    import numpy as np

    indices = np.asarray(indices)
    return indices[np.unique(np.linspace(0, len(indices) - 1, min(len(indices), count)).round().astype(int))]


def _measure_shifts(model, plan, ranges, images, batch, indices, fmt=None):
    """Every quantized layer's mean output shift in ``fmt`` (INT8 by default), on up to BIAS_CORRECTION_IMAGES spread
    over ``indices``."""
    from trtpipe.quant.bias_correction import measure_bias_shifts
    from trtpipe.quant.qdq import INT8

    chosen = _spread(indices, BIAS_CORRECTION_IMAGES)
    batches = images.batches(batch, chosen)
    return measure_bias_shifts(model, plan, ranges, batches, _progress(len(chosen), "bias correction"), fmt or INT8)


def _rank(model, plan, ranges, images, batch, shifts, indices, fmt=None) -> list[dict]:
    """Sensitivity of every layer on SENSITIVITY_IMAGES of ``indices`` (calibration images, not held-back ones)."""
    from trtpipe.quant.sensitivity import rank_layers

    batches = list(images.batches(batch * 2, _spread(indices, SENSITIVITY_IMAGES)))
    ranking = rank_layers(model, plan, ranges, batches, _progress(len(plan.layers), "ranking layers"), shifts, fmt)
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


def _bar(total: int, description: str):
    """A tqdm bar on a terminal (None without tqdm); close it when done."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, leave=False, disable=None)


def _progress(total: int, description: str):
    """A tqdm bar's update function (None without tqdm or without a terminal)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, desc=description, leave=False, disable=None)
    return bar.update
