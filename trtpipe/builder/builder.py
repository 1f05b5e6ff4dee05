"""ONNX -> serialized TensorRT engine, with its sidecar, on TensorRT 10, 11 or TensorRT-RTX.

The default path is explicit precision: the precision is written into the ONNX first (an FP16
ONNX, or a Q/DQ ONNX from entropy calibration, by ``trtpipe.quant``) and the network is built
strongly typed, which every flavour supports. TensorRT 10's classic path (BuilderFlag.FP16/INT8
with an implicit calibrator) is kept behind ``fp16_mode="flag"`` / ``int8_mode="implicit"``.
"""

from __future__ import annotations

import contextlib
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
from trtpipe.io import atomic_output, atomic_write_bytes, ensure_writable_dir, sha256_bytes, sha256_file
from trtpipe.labels import names_from_metadata
from trtpipe.onnx.load import check_onnx_path, graph_io, onnx_sha256, read_onnx
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
from trtpipe.builder.profiles import check_image_size, resolve_profile
from trtpipe.onnx.specialise import dims_fixed_by_profile
from trtpipe.runtime.onnxruntime_engine import model_precision

log = logging.getLogger("trtpipe.builder")


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
        if self.skipped:
            return (
                f"{self.engine_path} is up to date ({side.precision}, {size_mb:.1f} MB, {side.built_by}){fidelity}; "
                "nothing to do (--force rebuilds)"
            )
        return (
            f"built {self.engine_path} ({side.precision}, {size_mb:.1f} MB) in {side.build_seconds:.1f} s "
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
    if spec is None and preprocess_path_for(onnx_path).exists():
        spec = PreprocessSpec.load(preprocess_path_for(onnx_path))

    intake = read_onnx(onnx_path)
    source_model = intake.model
    source_sha = onnx_sha256(onnx_path)
    weight_inputs = frozenset(name for name, _ in intake.weight_like_inputs)
    # The profile and the spec are checked on the source before the long work (calibration, FP16 range pass):
    # the network ONNX takes the same inputs (checked below), or, with --fuse-preprocess, uint8 frames in place of
    # the image input.
    source_inputs = graph_io(source_model)[0]
    _check_spec_fits(onnx_path, source_inputs, spec, weight_inputs)
    network_inputs = _fused_inputs(source_inputs, config.fuse_preprocess) if config.fuse_preprocess else source_inputs
    ranges, profile_notes = resolve_profile(network_inputs, config, weight_inputs=weight_inputs)
    # Where the profile fixes dimensions the ONNX leaves dynamic, TensorRT parses the ONNX specialised to them, its
    # shape arithmetic folded; where TensorRT refuses a model on shape grounds anyway, constants are folded and the
    # build tried once more (TensorRT's first refusal stays in the error if that fails too).
    fixed = dims_fixed_by_profile(source_inputs, ranges)
    source = _specialised_source(onnx_path, source_model, fixed, output) if fixed else _Source(onnx_path, source_model)
    request = _Request(onnx_path, source_sha, intake, network_inputs, tuple(ranges), tuple(profile_notes), config, spec,
                       output, flavor, force, started)
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
    network_inputs: tuple[TensorInfo, ...]  # the inputs the profile was resolved for
    ranges: tuple[ShapeRange, ...]
    profile_notes: tuple[str, ...]
    config: BuildConfig
    spec: PreprocessSpec | None
    output: Path
    flavor: Flavor
    force: bool
    started: float  # perf_counter at the start of build_engine


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
    intake, network_inputs, ranges = request.intake, request.network_inputs, list(request.ranges)
    source_inputs = graph_io(source.model)[0]
    rewrites = ()
    profile_notes = list(request.profile_notes)
    if source.specialisation is not None:
        rewrites = ({**source.specialisation.to_json(), "onnx": str(source.path), "onnx_sha256": onnx_sha256(source.path)},)
        profile_notes.append(source.specialisation.summary() + f": TensorRT parses {source.path}")
    network_onnx, realised, notes, calib_sha, fidelity, precision_rewrites = _prepare_network_onnx(
        source.path, source.model, config, spec, output, onnx_path
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
    size_warning = check_image_size(ranges, network_inputs, spec)  # the dims as given, not as specialised
    if size_warning:
        profile_notes.append(size_warning)
    target = _target(flavor, config)
    network_sha = onnx_sha256(network_onnx)
    fingerprint = {**config.fingerprint(), "network_onnx_sha256": network_sha}

    profiles = ({r.name: r.to_dict() for r in ranges},)
    current = _up_to_date_sidecar(output, request.source_sha, fingerprint, flavor, target, profiles)
    if current is not None and not request.force:
        return BuildResult(output, current, skipped=True, seconds=time.perf_counter() - request.started)

    log.info("building %s from %s with %s (%s) ...", output.name, network_onnx, flavor.label, realised)
    build_started = time.perf_counter()
    with no_gc_inside_tensorrt(), _ctrl_c_deferred() as interrupted:
        serialized, build_notes = _build_serialized(
            flavor, network_onnx, ranges, config, spec, output, interrupted, intake.checker_findings
        )
    build_seconds = time.perf_counter() - build_started

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
        notes=intake.notes + tuple(profile_notes) + tuple(notes) + tuple(build_notes) + _weights_notes(spec),
        network_onnx_path=str(network_onnx),
        network_onnx_sha256=network_sha,
        network_onnx_precision=model_precision(network_model),
        fidelity=fidelity,
        onnx_rewrites=rewrites,
        class_names=names_from_metadata({p.key: p.value for p in intake.model.metadata_props}),
    )
    # Engine first, sidecar last: a sidecar only ever describes a complete engine beside it.
    atomic_write_bytes(output, serialized)
    sidecar.save(sidecar_path_for(output))
    return BuildResult(output, sidecar, skipped=False, seconds=time.perf_counter() - request.started)


# ---------------------------------------------------------------------------------------------


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


def _prepare_network_onnx(onnx_path, source_model, config, spec, output, given_onnx=None):
    """Returns (ONNX to parse, how the precision is realised, notes, calibration cache sha256, INT8 fidelity check,
    rewrites of the ONNX on the way: the opset conversion, as sidecar ``onnx_rewrites`` entries).

    ``onnx_path`` is the ONNX to start from (the given one, or its specialised copy), ``given_onnx`` the one given
    to the builder, which names the default network ONNX (``<stem>.int8.onnx``). Defaults to ``onnx_path``.
    """
    given_onnx = given_onnx or onnx_path
    has_qdq = any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in source_model.graph.node)
    if config.precision == "fp32":
        if has_qdq:
            return onnx_path, "Q/DQ nodes in the given ONNX (strongly typed: they run in INT8)", [
                "the ONNX already has Q/DQ nodes, so this 'fp32' engine runs them in INT8"
            ], None, None, ()
        return onnx_path, "fp32", [], None, None, ()
    if config.precision == "int8" and has_qdq:
        return onnx_path, "Q/DQ ONNX as given (no calibration)", [
            "INT8 fidelity unchecked: the Q/DQ ONNX was given, trtpipe did not compare it with FP32"
        ], None, None, ()
    if config.precision == "int8" and spec is not None and spec.fused_preprocess is not None:
        raise ConfigError(
            f"{onnx_path} takes uint8 frames (its preprocessing is fused in, {spec.fused_preprocess}); INT8 calibration "
            "feeds preprocessed float tensors",
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


def _target(flavor: Flavor, config: BuildConfig) -> dict:
    if flavor.is_rtx:
        return {"kind": "aot", "compute_capabilities": list(config.compute_capabilities)}
    from trtpipe.cuda import device_info

    device = device_info()
    return {"kind": "gpu", "gpu_name": device.name, "compute_capability": device.compute_capability}


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
    ranges: list[ShapeRange],
    config: BuildConfig,
    spec,
    output,
    interrupted: threading.Event,
    checker_findings: tuple[str, ...] = (),
):
    """Parses and builds; returns the serialized engine and notes from the build (classic calibration).

    ``checker_findings`` (the ONNX checker's, on the source) are named in a parser rejection: the parser's
    error names the node, the checker's finding may say why.

    Raises KeyboardInterrupt when ``interrupted`` was set (Ctrl-C) during parsing or building.
    """
    logger = make_logger(flavor)  # the process's one TensorRT logger; this build's errors are captured from it
    with logger.capture_errors() as errors:
        return _build_with(flavor, logger, errors, network_onnx, ranges, config, spec, output, interrupted, checker_findings)


def _build_with(flavor, logger, errors: list[str], network_onnx: Path, ranges, config, spec, output, interrupted,
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
                         "run `trtpipe inspect MODEL.onnx` to list unsupported ops; rewrite them with "
                         "onnx-graphsurgeon or re-export with another opset")

    builder_config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for shape_range in ranges:
        profile.set_shape(shape_range.name, shape_range.min, shape_range.opt, shape_range.max)
    builder_config.add_optimization_profile(profile)
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
        if not flavor.is_rtx and "driver" in said.lower():
            hint = "TensorRT 10/11 builds need a GPU; to build ahead of time without one: pip install 'trtpipe[rtx]'"
        raise BuildError(f"{flavor.label} failed to build {output.name}: {said}", hint)
    if flavor.has_timing_cache:
        cache = builder_config.get_timing_cache()
        if cache is not None:
            atomic_write_bytes(timing_cache_path, memoryview(cache.serialize()))
    return memoryview(serialized).tobytes(), notes


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


def _weights_notes(spec: PreprocessSpec | None) -> tuple[str, ...]:
    if spec is not None and spec.random_weights:
        return ("RANDOM WEIGHTS: this engine's outputs are meaningless; its timings are real",)
    return ()

