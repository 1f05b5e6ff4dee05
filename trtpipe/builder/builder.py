"""ONNX -> serialized TensorRT engine, with its sidecar, on TensorRT 10, 11 or TensorRT-RTX.

The default path is explicit precision: the precision is written into the ONNX first (an FP16
ONNX, or a Q/DQ ONNX from entropy calibration, by ``trtpipe.quant``) and the network is built
strongly typed, which every flavour supports. TensorRT 10's classic path (BuilderFlag.FP16/INT8
with an implicit calibrator) is kept behind ``fp16_mode="flag"`` / ``int8_mode="implicit"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import trtpipe
from trtpipe.errors import BuildError, ConfigError
from trtpipe.flavors import Flavor, get_flavor, make_logger, no_gc_inside_tensorrt
from trtpipe.io import atomic_output, atomic_write_bytes, ensure_writable_dir, removed_on_error, sha256_bytes, sha256_file
from trtpipe.labels import names_from_metadata
from trtpipe.onnx.load import check_no_empty_axes, check_onnx_path, graph_io, onnx_sha256, read_onnx
from trtpipe.onnx.quantized import check_tensorrt_takes, scan_quantization
from trtpipe.spec import (
    BuildConfig,
    EngineSidecar,
    PreprocessSpec,
    ShapeRange,
    TensorInfo,
    parse_frame_size,
    preprocess_path_for,
    sidecar_path_for,
)
from trtpipe.builder.profiles import check_image_size, resolve_profiles
from trtpipe.onnx.specialise import dims_fixed_by_profile
from trtpipe.runtime.onnxruntime_engine import model_precision

log = logging.getLogger("trtpipe.builder")
QDQ_AS_GIVEN = " (Q/DQ as given, strongly typed)"  # precision_realised's end for a model that came quantized


@dataclass(frozen=True)
class BuildResult:
    """What ``build_engine`` produced (or found up to date)."""

    engine_path: Path
    sidecar: EngineSidecar
    skipped: bool  # True when an up-to-date engine was found and nothing was built
    seconds: float  # wall time of this call

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path_for(self.engine_path)

    def summary(self) -> str:
        """One line: what was made, where, how big, how long, by what, for which GPUs."""
        side = self.sidecar
        size_mb = side.engine_bytes / 1e6
        fidelity = ""
        if side.fidelity:
            from trtpipe.quant.search import fidelity_clause

            fidelity = f"; {fidelity_clause(side.fidelity)}"
        precision = side.precision_shown  # a model that came quantized: "fp8 (E4M3) weights and activations", not fp32
        if self.skipped:
            return (
                f"{self.engine_path} is up to date ({precision}, {size_mb:.1f} MB, {side.built_by}){fidelity}; "
                "nothing to do (--force rebuilds)"
            )
        return (
            f"built {self.engine_path} ({precision}, {size_mb:.1f} MB) in {side.build_seconds:.1f} s "
            f"with {side.flavor_label}, for {side.target_description}{fidelity}"
        )


def default_engine_path(onnx_path: str | Path, precision: str) -> Path:
    """``engines/mobilenetv2.onnx`` + fp16 -> ``engines/mobilenetv2_fp16.engine``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.name.split('.')[0]}_{precision}.engine")


def build_engine(
    onnx_path: str | Path,
    output: str | Path | None = None,
    config: BuildConfig | None = None,
    *,
    spec: PreprocessSpec | None = None,
    force: bool = False,
) -> BuildResult:
    """Builds a serialized TensorRT engine and its sidecar from an ONNX file.

    Args:
        onnx_path: the FP32 (or already Q/DQ) ONNX model.
        output: engine path. Defaults to ``<onnx dir>/<stem>_<precision>.engine``.
        config: precision, profile, builder limits. Defaults to ``BuildConfig()`` (FP32).
        spec: the model's preprocessing, stored in the sidecar. Defaults to the
            ``<stem>.preprocess.json`` beside the ONNX, when there is one.
        force: rebuild even when the sidecar says the engine is up to date.

    Returns:
        BuildResult; the engine and ``ENGINE.json`` are written atomically.

    Raises:
        TrtpipeError subclasses for bad input, a missing TensorRT, parser and builder failures.
    """
    started = time.perf_counter()
    config = config or BuildConfig()
    onnx_path = check_onnx_path(onnx_path)
    output = Path(output) if output else default_engine_path(onnx_path, config.precision)
    ensure_writable_dir(output.parent)
    flavor = get_flavor(config.flavor)
    _check_precision_mode(flavor, config)
    _check_compute_capabilities(flavor, config)
    config = _resolve_compatibility(flavor, config)
    config = _fp8_targets(flavor, config)  # before any work: FP8 needs FP8 tensor cores (SM89+)
    if spec is None and preprocess_path_for(onnx_path).exists():
        spec = PreprocessSpec.load(preprocess_path_for(onnx_path))

    intake = read_onnx(onnx_path)
    source_model = intake.model
    quantization = scan_quantization(source_model)
    if quantization:  # what TensorRT's parser refuses (asymmetric, E5M2, UINT4 ...), refused before any work
        check_tensorrt_takes(quantization, onnx_path, "build", flavor.qdq_types, f"{flavor.label}'s parser")
    _check_no_passthrough(onnx_path, source_model)
    check_no_empty_axes(onnx_path, source_model)
    source_sha = onnx_sha256(onnx_path)
    weight_inputs = frozenset(name for name, _ in intake.weight_like_inputs)
    # The profile and the spec are checked on the source before the long work (calibration, FP16 range pass):
    # the network ONNX takes the same inputs (checked below), or, with --fuse-preprocess, uint8 frames in place of
    # the image input.
    source_inputs = graph_io(source_model)[0]
    _check_spec_fits(onnx_path, source_inputs, spec, weight_inputs)
    _check_fused_nms(onnx_path, spec, flavor)
    if config.fuse_postprocess is not None and (spec is None or any(a.startswith("task") for a in spec.assumed)):
        # before calibration, not after it; a head appended for a guessed task would be a wrong engine
        raise ConfigError(
            f"--fuse-postprocess needs the model's task, and nothing says what {onnx_path} is "
            f"({'no preprocess spec beside it' if spec is None else 'the task was only assumed: ' + spec.task})",
            "say it: --task detection|classification|segmentation (or a spec beside the model: trtpipe spec MODEL.onnx)",
        )
    if config.fuse_postprocess is not None and spec.fused_postprocess is not None:
        raise ConfigError(f"{onnx_path} already ends in its post-processing ({spec.fused_postprocess})",
                          "build it without --fuse-postprocess")
    network_inputs = _fused_inputs(source_inputs, config.fuse_preprocess) if config.fuse_preprocess else source_inputs
    # a spec that says the image size (not an assumed one) sizes an image input whose H/W the ONNX leaves dynamic
    said_size = (spec is not None and spec.fused_preprocess is None and config.fuse_preprocess is None
                 and not any(a.startswith("input size") for a in spec.assumed))
    profile_ranges, profile_notes = resolve_profiles(
        network_inputs, config, weight_inputs=weight_inputs,
        image_size=(spec.height, spec.width, spec.layout) if said_size else None,
    )
    # Where the profile fixes dimensions the ONNX leaves dynamic, TensorRT parses the ONNX specialised to them, its
    # shape arithmetic folded; where TensorRT refuses a model on shape grounds anyway, constants are folded and the
    # build tried once more (TensorRT's first refusal stays in the error if that fails too). Several profiles fix
    # nothing: each would need its own specialisation.
    fixed = dims_fixed_by_profile(source_inputs, profile_ranges[0]) if len(profile_ranges) == 1 else {}
    source = _specialised_source(onnx_path, source_model, fixed, output) if fixed else _Source(onnx_path, source_model)
    request = _Request(onnx_path, source_sha, intake, network_inputs, tuple(tuple(r) for r in profile_ranges),
                       tuple(profile_notes), config, spec, output, flavor, force, started, quantization)
    try:
        with source.removed_on_failure():
            return _build_from(source, request)
    except BuildError as refused:
        if source.specialisation is not None or not _refused_on_shapes(refused.message):
            raise
        log.warning("%s; folding constants and building again", refused.message)
        folded = _specialised_source(onnx_path, source_model, {}, output)
        try:
            with folded.removed_on_failure():
                return _build_from(folded, request)
        except BuildError as again:
            raise BuildError(
                f"{again.message} (after {folded.specialisation.summary()}; before, TensorRT said: {refused.message})",
                "give a profile that fixes the dynamic image dimensions (--minShapes = --optShapes = --maxShapes "
                "apart from the batch, e.g. the size the model was trained at), so trtpipe specialises the ONNX to "
                "them; run with -v for TensorRT's full log",
            ) from None


@dataclass(frozen=True)
class _Request:
    """What build_engine resolved before the precision step: the same for a second try on a folded ONNX."""

    onnx_path: Path  # as given
    source_sha: str
    intake: object  # OnnxIntake of the given ONNX
    network_inputs: tuple[TensorInfo, ...]  # the inputs the profiles were resolved for
    profile_ranges: tuple[tuple[ShapeRange, ...], ...]  # one per optimization profile
    profile_notes: tuple[str, ...]
    config: BuildConfig
    spec: PreprocessSpec | None
    output: Path
    flavor: Flavor
    force: bool
    started: float  # perf_counter at the start of build_engine
    quantization: object = None  # trtpipe.onnx.quantized.Quantization of a model that came quantized (else None)


@dataclass(frozen=True)
class _Source:
    """The ONNX the precision step and the parser start from: the given one, or its specialised, folded copy."""

    path: Path
    model: object  # onnx.ModelProto
    specialisation: object = None  # trtpipe.onnx.specialise.Specialisation; None: the ONNX as given
    written: bool = False  # this build wrote ``path`` (new, or other bytes than before)

    @contextlib.contextmanager
    def removed_on_failure(self):
        """Removes the specialised ONNX this build wrote when the build fails: no engine refers to it."""
        try:
            yield
        except BaseException:
            if self.written:
                self.path.unlink(missing_ok=True)
            raise


def _specialised_source(onnx_path: Path, model, fixed: dict, output: Path) -> _Source:
    """Specialises ``fixed`` input shapes and folds constants (Polygraphy), written beside the engine as
    ``<engine stem>.specialised.onnx`` (unless it holds these bytes already)."""
    from trtpipe.onnx.specialise import specialise_and_fold

    folded, done = specialise_and_fold(model, fixed)
    path = output.with_name(output.name.split(".")[0] + ".specialised.onnx")
    data = folded.SerializeToString()
    # a rebuild with nothing changed rewrites nothing: the up-to-date check compares this file's hash
    written = not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data)
    if written:
        atomic_write_bytes(path, data)
    log.info("%s: %s -> %s", onnx_path, done.summary(), path)
    return _Source(path, folded, done, written)


# Substrings of TensorRT's build errors that blame shapes (dimension names, profiles, shape inference): a model
# refused for these may build once its dimensions are fixed and its shape arithmetic folded.
SHAPE_REFUSALS = ("dimension", "shape", "kmin", "kmax", "ioptimizationprofile")


def _refused_on_shapes(message: str) -> bool:
    return any(word in message.lower() for word in SHAPE_REFUSALS)


def _build_from(source: _Source, request: _Request) -> BuildResult:
    """Precision step, parse, build and sidecar for the ONNX ``source`` (see :func:`build_engine`)."""
    onnx_path, config, spec, output, flavor = request.onnx_path, request.config, request.spec, request.output, request.flavor
    intake, network_inputs, profile_ranges = request.intake, request.network_inputs, [list(r) for r in request.profile_ranges]
    source_inputs = graph_io(source.model)[0]
    rewrites = ()
    profile_notes = list(request.profile_notes)
    if source.specialisation is not None:
        rewrites = ({**source.specialisation.to_json(), "onnx": str(source.path), "onnx_sha256": onnx_sha256(source.path)},)
        profile_notes.append(source.specialisation.summary() + f": TensorRT parses {source.path}")
    # A refusal after the precision rewrite leaves nothing beside the engine: no <stem>.fp16.onnx, .int8.onnx,
    # .fused.onnx or .postprocess.onnx, no calibration cache (a missed INT8 fidelity target keeps the cache on
    # purpose: a retry is quick).
    with _rewrites_removed_on_error(onnx_path, output):
        network_onnx, realised, notes, calib_sha, fidelity, precision_rewrites = _prepare_network_onnx(
            source.path, source.model, config, spec, output, request.quantization, onnx_path
        )
        rewrites += precision_rewrites
        # trtpipe wrote the network ONNX itself (FP16, Q/DQ): the parser judges it, the checker's findings on the
        # source were already recorded.
        network_model = source.model if network_onnx == source.path else read_onnx(network_onnx, check=False).model
        inputs, outputs = graph_io(network_model)
        _check_rewritten_inputs(network_onnx, inputs, source_inputs)  # FP16/Q/DQ never turn a weight into an input
        if config.fuse_preprocess is not None:
            # Fused after the precision rewrite (and its calibration, which feeds preprocessed float tensors).
            network_onnx, spec, fuse_notes = _fuse_preprocess(network_onnx, spec, config, output)
            notes = list(notes) + fuse_notes
            network_model = read_onnx(network_onnx, check=False).model
            inputs, outputs = graph_io(network_model)
            _check_rewritten_inputs(network_onnx, inputs, network_inputs)
        elif spec is not None and spec.fused_preprocess is not None:  # an ONNX fused at export: the same notes as above
            from trtpipe.onnx.fuse_preprocess import fused_notes

            notes = list(notes) + fused_notes(spec)
        if config.fuse_postprocess is not None:
            # Appended last: the head reads the network's outputs in whatever precision they come (calibration and the
            # FP16 range pass saw the network without it).
            network_onnx, spec, post_notes = _fuse_postprocess(network_onnx, spec, config, output, flavor,
                                                               preprocess_path_for(onnx_path))
            notes = list(notes) + post_notes
            network_model = read_onnx(network_onnx, check=False).model
            inputs, outputs = graph_io(network_model)
        for index, ranges in enumerate(profile_ranges):
            size_warning = check_image_size(ranges, network_inputs, spec)  # the dims as given, not as specialised
            if size_warning:
                profile_notes.append(size_warning if len(profile_ranges) == 1 else f"profile {index}: {size_warning}")
        target = _target(flavor, config)
        network_sha = onnx_sha256(network_onnx)
        fingerprint = {**config.fingerprint(), "network_onnx_sha256": network_sha}

        profiles = tuple({r.name: r.to_dict() for r in ranges} for ranges in profile_ranges)
        current = _up_to_date_sidecar(output, request.source_sha, fingerprint, flavor, target, profiles)
        if current is not None and not request.force:
            return BuildResult(output, current, skipped=True, seconds=time.perf_counter() - request.started)

        log.info("building %s from %s with %s (%s) ...", output.name, network_onnx, flavor.label, realised)
        build_started = time.perf_counter()
        with no_gc_inside_tensorrt(), _ctrl_c_deferred() as interrupted:
            serialized, build_notes, network_dtypes = _build_serialized(
                flavor, network_onnx, profile_ranges, config, spec, output, interrupted, intake.checker_findings
            )
        build_seconds = time.perf_counter() - build_started
        refit = _refit_record(config, network_model)
        # The engine's bindings have the types TensorRT's network gave them (no float64 in TensorRT: a DOUBLE input is
        # FLOAT), which is what the runtime and a tensorrt_plan's Triton config must feed
        inputs, outputs, dtype_notes = _network_dtypes(inputs, outputs, network_dtypes)
        notes = list(notes) + dtype_notes

        sidecar = EngineSidecar(
            engine_file=output.name,
            engine_sha256=sha256_bytes(serialized),
            engine_bytes=len(serialized),
            onnx_path=str(onnx_path),
            onnx_sha256=request.source_sha,
            precision=config.precision,
            precision_realised=realised,
            profiles=profiles,
            inputs=inputs,
            outputs=outputs,
            trt_flavor=flavor.name,
            trt_version=flavor.version,
            target=target,
            build_config=fingerprint,
            build_seconds=round(build_seconds, 3),
            built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            trtpipe_version=trtpipe.__version__,
            weights=spec.weights if spec else "unknown",
            preprocess=spec.to_dict() if spec else None,
            calibration_cache_sha256=calib_sha,
            notes=intake.notes + tuple(profile_notes) + tuple(notes) + tuple(build_notes) + _weights_notes(spec)
            + _assumed_notes(spec),
            network_onnx_path=str(network_onnx),
            network_onnx_sha256=network_sha,
            network_onnx_precision=model_precision(network_model),  # a model that came quantized: by its own Q/DQ
            fidelity=fidelity,
            onnx_rewrites=rewrites,
            class_names=names_from_metadata({p.key: p.value for p in intake.model.metadata_props}),
            **refit,
        )
        # Engine first, sidecar last: a sidecar only ever describes a complete engine beside it.
        atomic_write_bytes(output, serialized)
        sidecar.save(sidecar_path_for(output))
        return BuildResult(output, sidecar, skipped=False, seconds=time.perf_counter() - request.started)


# ---------------------------------------------------------------------------------------------


def _rewrites_removed_on_error(onnx_path: Path, output: Path):
    """:func:`trtpipe.io.removed_on_error` over the files a build's rewrites write beside the engine and the ONNX."""
    from trtpipe.quant.search import FidelityTargetError

    stems = sorted({onnx_path.name.split(".")[0], output.name.split(".")[0]})
    suffixes = (".onnx", ".calib.json", ".calib.cache", ".preprocess.json")
    return removed_on_error((output.parent, onnx_path.parent), tuple(f"{s}*{x}" for s in stems for x in suffixes),
                            keep_on=(FidelityTargetError,))


def _check_precision_mode(flavor: Flavor, config: BuildConfig) -> None:
    classic = (config.precision == "int8" and config.int8_mode == "implicit") or (
        config.precision == "fp16" and config.fp16_mode == "flag"
    )
    if classic and not flavor.supports_classic_precision:
        option = "--int8-mode implicit" if config.precision == "int8" else "--fp16-mode flag"
        raise ConfigError(
            f"{option} needs TensorRT 10.x's BuilderFlag precision, but {flavor.label} builds strongly typed "
            "networks only (TensorRT 11 and TensorRT-RTX removed it)",
            "drop the option: the default explicit mode writes the precision into the ONNX and works everywhere",
        )


def _prepare_network_onnx(onnx_path, source_model, config, spec, output, quantization=None, given_onnx=None):
    """Returns (ONNX to parse, how the precision is realised, notes, calibration cache sha256, INT8 fidelity check,
    rewrites of the ONNX on the way: the opset conversion, as sidecar ``onnx_rewrites`` entries).

    ``onnx_path`` is the ONNX to start from (the given one, or its specialised copy), ``given_onnx`` the one given
    to the builder, which names the default network ONNX (``<stem>.int8.onnx``). Defaults to ``onnx_path``.

    A model that came quantized is built with its own Q/DQ, named by them (``trtpipe.onnx.quantized``): fp32 and int8
    parse it as given (calibrating it again would quantize it twice), fp16 converts what is float around the Q/DQ."""
    given_onnx = given_onnx or onnx_path
    if quantization and config.precision in ("int8", "fp8") and quantization.key != config.precision:
        asked = config.precision
        raise ConfigError(
            f"--precision {asked} asks for an {asked.upper()} engine, but {onnx_path} came quantized as "
            f"{quantization.precision} (Q/DQ nodes {quantization.names()}); trtpipe does not quantize a quantized "
            "model again",
            f"build it without --precision (trtpipe build {onnx_path}: its own Q/DQ decide), or calibrate the float "
            f"model it was quantized from (trtpipe build FLOAT.onnx --precision {asked} --images DIR)",
        )
    if quantization and config.precision in ("fp32", "int8", "fp8"):
        asked = "" if config.precision == "fp32" else (f"--precision {config.precision} uses the model's own Q/DQ, "
                                                        "nothing calibrated; ")
        return onnx_path, f"{quantization.precision}{QDQ_AS_GIVEN}", [
            f"{asked}the ONNX came quantized, {quantization.summary()}; the engine runs its Q/DQ as they are",
            "fidelity against the float model unchecked: trtpipe was given the quantized ONNX only",
        ], None, None, ()
    if config.precision == "fp32":
        return onnx_path, "fp32", [], None, None, ()
    if config.precision in ("int8", "fp8") and spec is not None and spec.fused_preprocess is not None:
        raise ConfigError(
            f"{onnx_path} takes uint8 frames (its preprocessing is fused in, {spec.fused_preprocess}); "
            f"{config.precision.upper()} calibration feeds preprocessed float tensors",
            "build INT8 from the unfused ONNX with --fuse-preprocess: calibration runs first, then the preprocessing is fused",
        )
    if (config.precision == "int8" and config.int8_mode == "implicit") or (
        config.precision == "fp16" and config.fp16_mode == "flag"
    ):
        realised = "BuilderFlag.INT8 + IInt8EntropyCalibrator2" if config.precision == "int8" else "BuilderFlag.FP16"
        unchecked = ["INT8 fidelity unchecked: in implicit mode TensorRT chooses each layer's precision on the GPU"]
        return onnx_path, realised, unchecked if config.precision == "int8" else [], None, None, ()
    from trtpipe.quant.prepare import prepare_precision_onnx

    # The engine's own network ONNX, which its CPU fallback runs: the default engine keeps the familiar
    # <stem>.int8.onnx / <stem>.fp16.onnx; an engine of another name gets <engine stem>.<precision>.onnx, so two
    # engines built from one ONNX with other options never share (and overwrite) the file.
    from trtpipe.quant.prepare import stem_of

    name = stem_of(given_onnx) if output == default_engine_path(given_onnx, config.precision) else output.stem
    prepared = prepare_precision_onnx(onnx_path, config, spec, output.parent, name)
    fidelity = None
    if prepared.fidelity is not None:
        fidelity = {**prepared.fidelity, "prepare_seconds": round(prepared.seconds, 1)}
    return (
        Path(prepared.path), prepared.precision_realised, list(prepared.notes), prepared.calibration_cache_sha256, fidelity,
        prepared.rewrites,
    )


def _check_spec_fits(onnx_path: Path, inputs, spec: PreprocessSpec | None, weight_inputs: frozenset[str]) -> None:
    """The preprocess spec's images fit the network's one image input (layout, channels, size, dtype).

    Models with several inputs are not checked: which one takes images is the caller's to say (Pipeline feeds
    the first).

    Raises:
        InputError: naming the input, its shape and the shape the spec makes (see ``check_image_input``).
    """
    from trtpipe.quant.feeds import check_image_input

    images = [tensor for tensor in inputs if tensor.name not in weight_inputs]
    if spec is not None and len(images) == 1:
        check_image_input(spec, images[0], onnx_path)


def _fused_inputs(source_inputs, frames: str) -> tuple[TensorInfo, ...]:
    """The inputs a network takes once ``frames`` preprocessing is fused in: uint8 NHWC BGR frames (the source's
    batch axis; the frame size, or dynamic) in place of its one image input."""
    from trtpipe.onnx.fuse_preprocess import FRAMES_INPUT

    height, width = parse_frame_size(frames) if frames != "dynamic" else (-1, -1)
    return (TensorInfo(FRAMES_INPUT, (source_inputs[0].shape[0], height, width, 3), "uint8"),)


def _fuse_preprocess(network_onnx: Path, spec: PreprocessSpec | None, config: BuildConfig, output: Path):
    """``--fuse-preprocess``: the network ONNX with the spec's preprocessing prepended, written beside the engine
    as ``<engine stem>.fused.onnx`` (+ its spec); returns it, the fused spec and notes for the sidecar."""
    from trtpipe.onnx.fuse_preprocess import parity_note, write_fused_onnx

    if spec is None:
        raise ConfigError(
            f"--fuse-preprocess needs the model's preprocess spec, and {network_onnx} has none beside it",
            "export with trtpipe export (which writes <stem>.preprocess.json), or write one with PreprocessSpec(...).save()",
        )
    if config.precision == "int8" and config.int8_mode == "implicit":
        raise ConfigError(
            "--fuse-preprocess with --int8-mode implicit: TensorRT's calibrator would feed float tensors to a network "
            "that takes uint8 frames",
            "use the default --int8-mode explicit (calibration happens before the preprocessing is fused)",
        )
    fused_path = output.with_name(output.name.split(".")[0] + ".fused.onnx")
    fused = write_fused_onnx(network_onnx, spec, config.fuse_preprocess, fused_path)
    return fused_path, fused.spec, [fused.note, parity_note(fused)]


def _check_fused_nms(onnx_path: Path, spec: PreprocessSpec | None, flavor) -> None:
    """An ONNX whose fused head suppresses with NonMaxSuppression cannot build on TensorRT-RTX (no runner for it):
    refused before any work, with the export that builds."""
    from trtpipe.spec import FusedPostprocess

    if spec is None or spec.fused_postprocess is None or not flavor.is_rtx:
        return
    if FusedPostprocess.parse(spec.fused_postprocess).nms == "onnx":
        raise ConfigError(
            f"{onnx_path}: its fused head suppresses with NonMaxSuppression, which {flavor.label} has no runner for "
            "(as for NonZero, NVIDIA/TensorRT-RTX#32)",
            "export it with --fuse-postprocess --nms loop, or build the raw ONNX with build --fuse-postprocess",
        )


def _fuse_postprocess(network_onnx: Path, spec: PreprocessSpec | None, config: BuildConfig, output: Path, flavor,
                      source_spec: Path | None = None):
    """``--fuse-postprocess``: the network ONNX with the task head appended, written beside the engine as
    ``<engine stem>.postprocess.onnx`` (+ its spec); returns it, the spec with ``fused_postprocess`` and notes."""
    from trtpipe.onnx.fuse_postprocess import write_fused_postprocess_onnx
    from trtpipe.spec import parse_postprocess_options

    # (build_engine refused a missing or assumed task and an ONNX already fused before any work)
    # TensorRT-RTX 1.7 has no NonMaxSuppression runner (nor NonZero's, NVIDIA/TensorRT-RTX#32): its YOLO head
    # suppresses in an ONNX Loop instead.
    nms = "loop" if flavor.is_rtx else "onnx"
    destination = output.with_name(output.name.split(".")[0] + ".postprocess.onnx")
    fused = write_fused_postprocess_onnx(network_onnx, spec, destination, nms=nms, keep_spec=source_spec,
                                         **parse_postprocess_options(config.fuse_postprocess))
    return destination, fused.spec, [fused.note]


def _check_rewritten_inputs(network_onnx: Path, inputs, expected) -> None:
    """An ONNX trtpipe wrote (FP16, Q/DQ, fused preprocessing) takes exactly the ``expected`` inputs (names and
    shapes, in order): the ones the profile was resolved for. A rewrite that adds or changes one is a bug."""
    seen, wanted = [(t.name, t.shape) for t in inputs], [(t.name, t.shape) for t in expected]
    if seen != wanted:
        raise BuildError(
            f"{network_onnx}: the rewritten ONNX has inputs {seen}, not the {wanted} the profile was resolved for",
            "this is a trtpipe bug; please report it with the model",
        )


def _check_compute_capabilities(flavor: Flavor, config: BuildConfig) -> None:
    """``--compute-capability`` names targets of the installed TensorRT-RTX (checked before any long work).

    Raises:
        ConfigError: a value the flavour has no ``ComputeCapability`` for (listing the valid ones), or any value
            with TensorRT 10/11, which builds for the GPU it runs on.
    """
    if not config.compute_capabilities:
        return
    if not flavor.is_rtx:
        raise ConfigError(
            f"--compute-capability applies to TensorRT-RTX ahead-of-time builds; {flavor.label} builds for the GPU "
            "it runs on",
            "drop --compute-capability, or build with --flavor tensorrt_rtx",
        )
    valid = flavor.compute_capabilities
    unknown = [cc for cc in config.compute_capabilities if cc not in valid]
    if unknown:
        raise ConfigError(
            f"--compute-capability {','.join(unknown)}: {flavor.label} has no such target; valid values are "
            f"{', '.join(valid)} (without the option: {', '.join(flavor.default_compute_capabilities)})",
            f"pick from {', '.join(valid)}; for a GPU without an RTX target (e.g. Hopper, SM90) build with TensorRT "
            "10/11 on that GPU: --flavor tensorrt",
        )


#: TensorRT-RTX has no build GPU to be compatible with: its ahead-of-time targets are the compatibility. The first
#: compute capability of the Ampere generation, for ``--hardwareCompatibilityLevel ampere+``.
AMPERE = 80


def _resolve_compatibility(flavor: Flavor, config: BuildConfig) -> BuildConfig:
    """Checks the compatibility, refit and profile options against the flavour, before any long work.

    TensorRT-RTX ignores ``hardware_compatibility_level`` (it logs "setHardwareCompatibilityLevel() is unsupported
    in TensorRT-RTX"): there ``ampere+`` becomes the flavour's SM80-and-later targets, and
    ``sameComputeCapability``, which names the build GPU that RTX does not have, is refused.

    Returns:
        ``config``, with ``compute_capabilities`` filled in for RTX ``ampere+``.

    Raises:
        ConfigError: an option the flavour's recorded API lacks, or the RTX cases above.
    """
    trt = flavor.module
    for wanted, flag in (("--versionCompatible", config.version_compatible and "VERSION_COMPATIBLE"),
                         ("--excludeLeanRuntime", config.exclude_lean_runtime and "EXCLUDE_LEAN_RUNTIME"),
                         ("--stripWeights", config.strip_weights and "STRIP_PLAN"),
                         ("--refit", config.refit and "REFIT")):
        if flag and not hasattr(trt.BuilderFlag, flag):
            raise ConfigError(f"{wanted} needs BuilderFlag.{flag}, which {flavor.label} does not have",
                              f"drop {wanted}, or build with a TensorRT that has it (10.x, 11.x, TensorRT-RTX)")
    level = config.hardware_compatibility
    if level in (None, "none"):
        return config
    if not flavor.is_rtx:
        if not hasattr(trt, "HardwareCompatibilityLevel"):
            raise ConfigError(f"--hardwareCompatibilityLevel needs HardwareCompatibilityLevel, which {flavor.label} lacks",
                              "drop the option")
        return config
    if level == "sameComputeCapability":
        raise ConfigError(
            f"--hardwareCompatibilityLevel sameComputeCapability: {flavor.label} builds ahead of time, without a build "
            "GPU whose compute capability the engine could share",
            "name the target GPUs' compute capability instead, e.g. --compute-capability SM86 (valid: "
            f"{', '.join(flavor.compute_capabilities)})",
        )
    ampere = tuple(cc for cc in flavor.compute_capabilities if int(cc[2:]) >= AMPERE)
    older = [cc for cc in config.compute_capabilities if cc not in ampere]
    if older:
        raise ConfigError(
            f"--hardwareCompatibilityLevel ampere+ with --compute-capability {','.join(older)}: those GPUs are older "
            "than Ampere",
            f"drop --compute-capability (ampere+ on {flavor.label} means {','.join(ampere)}), or drop "
            "--hardwareCompatibilityLevel to build for Turing",
        )
    return dataclasses.replace(config, compute_capabilities=config.compute_capabilities or ampere)


FP8_MIN_CAPABILITY = (8, 9)  # Ada (SM89), Hopper (SM90), Blackwell (SM100/SM120): FP8 tensor cores


def _fp8_targets(flavor: Flavor, config: BuildConfig) -> BuildConfig:
    """``--precision fp8`` on targets that have FP8 tensor cores, or a refusal before any work.

    TensorRT-RTX: without ``--compute-capability`` its default targets include SM80/SM86, which have no FP8 (its
    compiler refuses them: "Cannot compile for target(s) sm80, because the model contains HW-specific datatypes:
    fp8_e4m3"), so an FP8 build targets the flavour's SM89+ capabilities and says so; named targets below SM89 are
    refused. TensorRT 10/11 build for the GPU they run on: one below SM89 is refused.

    Raises:
        ConfigError: a target (or the GPU) without FP8 tensor cores.
    """
    import dataclasses

    if config.precision != "fp8":
        return config
    if flavor.is_rtx:
        capable = [cc for cc in flavor.default_compute_capabilities if _sm(cc) >= FP8_MIN_CAPABILITY]
        if not config.compute_capabilities:
            log.info("FP8: building for %s (the SM89+ targets of %s; SM80/SM86 have no FP8 tensor cores)",
                     ", ".join(capable), flavor.label)
            return dataclasses.replace(config, compute_capabilities=tuple(capable))
        below = [cc for cc in config.compute_capabilities if _sm(cc) < FP8_MIN_CAPABILITY]
        if below:
            raise ConfigError(
                f"--precision fp8 with --compute-capability {','.join(below)}: FP8 needs FP8 tensor cores (SM89 and "
                "newer: Ada, Hopper, Blackwell)",
                f"target {','.join(capable)} (or leave --compute-capability out), or build --precision int8 / fp16 for "
                f"{','.join(below)}",
            )
        return config
    from trtpipe.cuda import device_info

    device = device_info()
    if tuple(int(x) for x in str(device.compute_capability).split(".")[:2]) < FP8_MIN_CAPABILITY:
        raise ConfigError(
            f"--precision fp8 on {device.name} (compute capability {device.compute_capability}): FP8 needs FP8 tensor "
            "cores (SM89 and newer: Ada, Hopper, Blackwell)",
            "build --precision int8 or fp16 for this GPU, or build FP8 on the GPU it will run on",
        )
    return config


def _sm(name: str) -> tuple[int, int]:
    """``SM89`` -> (8, 9), ``SM120`` -> (12, 0)."""
    digits = name.upper().removeprefix("SM")
    return int(digits[:-1]), int(digits[-1])


def _target(flavor: Flavor, config: BuildConfig) -> dict:
    if flavor.is_rtx:
        return {"kind": "aot", "compute_capabilities": list(config.compute_capabilities)}
    from trtpipe.cuda import device_info

    device = device_info()
    target = {"kind": "gpu", "gpu_name": device.name, "compute_capability": device.compute_capability}
    if config.hardware_compatibility not in (None, "none"):  # only when set: older sidecars still match
        target["hardware_compatibility"] = config.hardware_compatibility
    return target


def _refit_record(config: BuildConfig, network_model) -> dict:
    """The sidecar fields of a refittable or weight-stripped engine: what ``trtpipe refit`` checks and updates."""
    if not (config.strip_weights or config.refit):
        return {}
    from trtpipe.onnx.structure import graph_structure_sha256, weights_sha256

    return {"weights_stripped": config.strip_weights, "refittable": True,
            "graph_sha256": graph_structure_sha256(network_model), "weights_sha256": weights_sha256(network_model)}


def _builder_flags(config: BuildConfig) -> list[str]:
    """The BuilderFlag names of the compatibility and refit options (trtexec's: --stripWeights alone is
    STRIP_PLAN + REFIT_IDENTICAL, with --refit STRIP_PLAN + REFIT)."""
    flags = []
    if config.version_compatible:
        flags.append("VERSION_COMPATIBLE")
    if config.exclude_lean_runtime:
        flags.append("EXCLUDE_LEAN_RUNTIME")
    if config.strip_weights:
        flags += ["STRIP_PLAN", "REFIT" if config.refit else "REFIT_IDENTICAL"]
    elif config.refit:
        flags.append("REFIT")
    return flags


def _up_to_date_sidecar(output: Path, source_sha: str, fingerprint: dict, flavor: Flavor, target: dict, profiles: tuple):
    """The sidecar of an engine at ``output`` built from the same ONNX, options, TensorRT, target and profile.

    The profile is compared as resolved, not only the options: an engine whose sidecar records another
    profile for the same options (an older trtpipe resolved them differently) is rebuilt.
    """
    sidecar_path = sidecar_path_for(output)
    if not (output.is_file() and sidecar_path.is_file()):
        return None
    try:
        sidecar = EngineSidecar.load(sidecar_path)
    except trtpipe.TrtpipeError:
        return None  # unreadable or old sidecar: rebuild rather than trust it
    same = (
        sidecar.onnx_sha256 == source_sha
        and sidecar.build_config == fingerprint
        and sidecar.network_onnx_sha256 == fingerprint["network_onnx_sha256"]  # older sidecars lack it: rebuild
        and (sidecar.trt_flavor, sidecar.trt_version) == (flavor.name, flavor.version)
        and sidecar.target == target
        and tuple(sidecar.profiles) == profiles
        and sidecar.engine_bytes == output.stat().st_size
        and sidecar.engine_sha256 == sha256_file(output)
    )
    return sidecar if same else None


def _build_serialized(
    flavor,
    network_onnx: Path,
    profile_ranges: list[list[ShapeRange]],
    config: BuildConfig,
    spec,
    output,
    interrupted: threading.Event,
    checker_findings: tuple[str, ...] = (),
):
    """Parses and builds; returns the serialized engine, notes from the build (classic calibration) and the TensorRT
    network's DataType name of each input and output.

    ``checker_findings`` (the ONNX checker's, on the source) are named in a parser rejection: the parser's
    error names the node, the checker's finding may say why.

    Raises KeyboardInterrupt when ``interrupted`` was set (Ctrl-C) during parsing or building.
    """
    logger = make_logger(flavor)  # the process's one TensorRT logger; this build's errors are captured from it
    with logger.capture_errors() as errors:
        return _build_with(flavor, logger, errors, network_onnx, profile_ranges, config, spec, output, interrupted,
                           checker_findings)


def _build_with(flavor, logger, errors: list[str], network_onnx: Path, profile_ranges, config, spec, output, interrupted,
                checker_findings: tuple[str, ...]):
    trt = flavor.module
    builder = trt.Builder(logger)
    classic = (config.precision == "int8" and config.int8_mode == "implicit") or (
        config.precision == "fp16" and config.fp16_mode == "flag"
    )
    # Explicit precision: the ONNX's types are the engine's types. TensorRT 10's classic flags
    # need a weakly typed network, the only place trtpipe lets TensorRT choose precisions.
    flags = 0 if classic else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse_from_file(str(network_onnx))
    if interrupted.is_set():
        raise KeyboardInterrupt
    if not parsed:
        also = f" (the ONNX checker also reports: {'; '.join(checker_findings)})" if checker_findings else ""
        raise BuildError(f"{network_onnx}: the TensorRT ONNX parser rejected the model: {describe_parser_errors(parser)}{also}",
                         _parser_hint(network_onnx, flavor))
    network_dtypes = {network.get_input(i).name: network.get_input(i).dtype.name for i in range(network.num_inputs)}
    network_dtypes.update({network.get_output(i).name: network.get_output(i).dtype.name for i in range(network.num_outputs)})

    builder_config = builder.create_builder_config()
    made = []
    for ranges in profile_ranges:
        made.append(builder.create_optimization_profile())
        for shape_range in ranges:
            made[-1].set_shape(shape_range.name, shape_range.min, shape_range.opt, shape_range.max)
        builder_config.add_optimization_profile(made[-1])
    profile = made[0]  # classic calibration runs on profile 0 (TensorRT's default calibration profile)
    for name in _builder_flags(config):
        flag = getattr(trt.BuilderFlag, name)
        builder_config.set_flag(flag)
        if not builder_config.get_flag(flag):  # TensorRT logs why and leaves the flag unset
            raise BuildError(f"{flavor.label} refused BuilderFlag.{name}: {'; '.join(errors[-2:]) or 'no message'}",
                             "see trtpipe -v build ... for TensorRT's log")
    if not flavor.is_rtx and config.hardware_compatibility not in (None, "none"):
        from trtpipe.spec import HARDWARE_COMPATIBILITY_LEVELS

        builder_config.hardware_compatibility_level = getattr(
            trt.HardwareCompatibilityLevel, HARDWARE_COMPATIBILITY_LEVELS[config.hardware_compatibility])
    if config.workspace_mib is not None:
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    if config.optimization_level is not None:
        builder_config.builder_optimization_level = config.optimization_level
    if flavor.is_rtx and config.compute_capabilities:
        builder_config.num_compute_capabilities = len(config.compute_capabilities)
        for index, name in enumerate(config.compute_capabilities):
            if not builder_config.set_compute_capability(getattr(trt.ComputeCapability, name), index):
                raise BuildError(f"{flavor.label} refused compute capability {name}: {'; '.join(errors[-2:])}",
                                 f"pick from {', '.join(flavor.compute_capabilities)}")
    timing_cache_path = Path(config.timing_cache) if config.timing_cache else output.parent / "timing.cache"
    if flavor.has_timing_cache:
        _load_timing_cache(builder_config, timing_cache_path)
    notes: list[str] = []
    calibrator = None
    if classic:
        from trtpipe.builder.classic import configure_classic

        notes, calibrator = configure_classic(trt, builder, network, builder_config, config, spec,
                                              output.with_suffix(".calib.cache"), calibration_profile=profile)

    # A progress monitor lets Ctrl-C stop TensorRT at its next step instead of after the whole build.
    monitor = _CancellingMonitor.create(trt, interrupted) if hasattr(trt, "IProgressMonitor") else None
    if monitor is not None:
        builder_config.progress_monitor = monitor
    try:
        serialized = builder.build_serialized_network(network, builder_config)
    finally:
        if calibrator is not None:
            calibrator.close()  # its device memory; the calibrator itself goes with builder_config
    if interrupted.is_set():
        raise KeyboardInterrupt
    if serialized is None:
        said = "; ".join(errors[-3:]) or "no error message from TensorRT"
        hint = "run with -v for TensorRT's full log"
        if "libnvinfer_lean" in said:
            hint = ("this TensorRT has no lean runtime library to embed in a version-compatible plan: add "
                    "--excludeLeanRuntime (the plan then runs where TensorRT of its own version is installed)")
        elif flavor.is_rtx and (config.strip_weights or config.refit) and ("myelin" in said.lower() or "cuda" in said.lower()):
            hint = (f"{flavor.label} compiles refittable and weight-stripped engines with the GPU's driver (measured: "
                    "it fails on a machine without one); build them on a machine with an NVIDIA GPU, or drop "
                    "--stripWeights/--refit")
        elif not flavor.is_rtx and "driver" in said.lower():
            hint = "TensorRT 10/11 builds need a GPU; to build ahead of time without one: pip install 'trtpipe[rtx]'"
        raise BuildError(f"{flavor.label} failed to build {output.name}: {said}", hint)
    if flavor.has_timing_cache:
        cache = builder_config.get_timing_cache()
        if cache is not None:
            atomic_write_bytes(timing_cache_path, memoryview(cache.serialize()))
    return memoryview(serialized).tobytes(), notes, network_dtypes


# TensorRT DataType name -> the dtype names the sidecar uses (trtpipe.onnx.load's)
_TENSORRT_DTYPES = {
    "FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8", "INT32": "int32",
    "INT64": "int64", "BOOL": "bool", "FP8": "float8e4m3fn", "INT4": "int4", "FP4": "float4e2m1",
}


def _network_dtypes(inputs, outputs, network_dtypes: dict[str, str]):
    """The sidecar's inputs and outputs with the dtypes of TensorRT's network (by name), and a note per change."""
    import dataclasses

    notes = []

    def retyped(tensor):
        found = _TENSORRT_DTYPES.get(network_dtypes.get(tensor.name, ""))
        if found is None or found == tensor.dtype:
            return tensor
        notes.append(f"{tensor.name!r} is {tensor.dtype} in the ONNX and {found} in TensorRT's network "
                     f"(DataType.{network_dtypes[tensor.name]}): the engine binds {found}")
        return dataclasses.replace(tensor, dtype=found)

    return tuple(map(retyped, inputs)), tuple(map(retyped, outputs)), notes


def _check_no_passthrough(onnx_path: Path, model) -> None:
    """Refuses a graph input that is also a graph output: TensorRT cannot bind one tensor as both (its parser renames
    the input, so the profile, the sidecar and the runtime would name another tensor than the ONNX's)."""
    from trtpipe.errors import OnnxModelError
    from trtpipe.onnx.load import passthrough_outputs

    both = passthrough_outputs(model)
    if both:
        name = both[0]
        raise OnnxModelError(
            f"{onnx_path}: graph input {name!r} is also a graph output, with no node between"
            f"{f' (also {list(both[1:])})' if len(both) > 1 else ''}; a TensorRT engine cannot bind one tensor "
            "as both input and output",
            f"drop {name!r} from the graph outputs (the caller already holds it), e.g. with onnx-graphsurgeon: "
            f"graph.outputs = [t for t in graph.outputs if t.name != {name!r}]; or export with an Identity between",
        )


def _parser_hint(network_onnx: Path, flavor) -> str:
    """The Hint of a parser rejection: an op outside ONNX (EfficientNMS_TRT, a custom domain) is built by TensorRT
    only as a plugin, which no re-export or opset changes; anything else is an op or opset the parser lacks."""
    import onnx

    from trtpipe.onnx.load import plugin_kind, plugin_nodes

    hint = "run `trtpipe inspect MODEL.onnx` to list unsupported ops; "
    try:
        model = onnx.load(str(network_onnx), load_external_data=False)
    except Exception:  # noqa: BLE001 - the parser read it; this only picks the hint
        model = None
    plugins = {n.op_type: n for n in (plugin_nodes(model) if model is not None else ())}
    if not plugins:
        return hint + "rewrite them with onnx-graphsurgeon or re-export with another opset"
    where = ("TensorRT-RTX ships no plugin library, so register the plugin's creator from a library of your own"
             if flavor.is_rtx else "load its plugin library first (trt.init_libnvinfer_plugins, or trtexec --staticPlugins)")
    what = "; ".join(f"{op} is {plugin_kind(node)}" for op, node in sorted(plugins.items()))
    return (f"{hint}{what}: TensorRT builds it only as a plugin: {where}, or export the model without the plugin node "
            "(e.g. end at the raw boxes and scores and run the NMS after the engine)")


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Turns Ctrl-C during parsing and building into a flag, acted on when TensorRT has returned.

    A KeyboardInterrupt raised inside a TensorRT callback (the logger, the progress monitor) is
    caught and dropped by TensorRT, which then carries on and finishes the build: Ctrl-C would be
    lost and the engine written. So while TensorRT works the signal only sets the yielded flag;
    the build code checks it after each TensorRT call and raises KeyboardInterrupt itself.
    """
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals are delivered to the main thread only
        return

    def on_sigint(signum, frame):
        log.warning("interrupt received: cancelling the build (nothing will be written)")
        flag.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _CancellingMonitor:
    """Factory for a trt.IProgressMonitor that logs build phases and stops the build once ``flag`` is set."""

    @staticmethod
    def create(trt, flag: threading.Event):
        class Monitor(trt.IProgressMonitor):
            def __init__(self) -> None:
                trt.IProgressMonitor.__init__(self)

            def phase_start(self, phase_name, parent_phase, num_steps):
                log.debug("build phase %s (%d steps)", phase_name, num_steps)

            def step_complete(self, phase_name, step):
                return not flag.is_set()  # False asks TensorRT to cancel the build

            def phase_finish(self, phase_name):
                pass

        return Monitor()


def _load_timing_cache(builder_config, path: Path) -> None:
    data = path.read_bytes() if path.is_file() else b""
    cache = builder_config.create_timing_cache(data)
    if not builder_config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s was made for another device or TensorRT; starting a new one", path)
        builder_config.set_timing_cache(builder_config.create_timing_cache(b""), ignore_mismatch=False)


def describe_parser_errors(parser) -> str:
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = f"node {error.node()}" if error.node() >= 0 else "model"
        name = error.node_name() if hasattr(error, "node_name") else ""
        op = error.node_operator() if hasattr(error, "node_operator") else ""
        if name or op:
            where += f" {name!r} ({op})"
        lines.append(f"{where}: {error.desc()}")
    return "; ".join(lines) or "no error detail"


def _assumed_notes(spec: PreprocessSpec | None) -> tuple[str, ...]:
    """The sidecar's note of what the preprocess spec assumed (nothing said it: see trtpipe.presets)."""
    if spec is None or not spec.assumed:
        return ()
    return (f"preprocess spec ASSUMED (no spec file, preset or flag said it): {'; '.join(spec.assumed)}",)


def _weights_notes(spec: PreprocessSpec | None) -> tuple[str, ...]:
    if spec is not None and spec.random_weights:
        return ("RANDOM WEIGHTS: this engine's outputs are meaningless; its timings are real",)
    return ()

