"""Zoo model -> ONNX (+ its preprocess spec), checked, cleaned and verified against torch.

    result = export_model("mobilenetv2")   # engines/mobilenetv2.onnx + engines/mobilenetv2.preprocess.json
    result = export_model("detr_resnet50") # two outputs (logits, boxes), static batch 1 as detectors deploy

Steps: load the model with the weights asked for; export with the TorchScript exporter (opset 17 by
default, in 0.3 s where the dynamo exporter takes 6 s and cannot go below opset 18); fold constants
and clean the graph; ONNX checker and shape inference; run the ONNX in ONNX Runtime on a batch of
another size than the export's and compare every output with torch; write ONNX and spec atomically.
When any of that fails at the TorchScript exporter (an op it cannot export, an op ONNX Runtime lacks
at that opset), the dynamo exporter at opset 18 gets a second try; the log, the ONNX's metadata and
the ExportResult say which exporter made the file and why the first one did not.

Outputs are named by the model's ``output_names`` attribute (detectors: ``("logits", "boxes")``),
else ``logits`` for classifiers and ``output`` for the others; each gets the dynamic batch axis.

The request (model, weights, opset, dynamic batch) is stored in the ONNX's metadata, so a second
call with the same request skips the export without importing torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import onnx

from trtpipe.errors import ConfigError, OnnxModelError
from trtpipe.io import atomic_output, ensure_writable_dir, sha256_file
from trtpipe.onnx.load import graph_io
from trtpipe.quant.feeds import check_image_input
from trtpipe.spec import PreprocessSpec, parse_fuse_preprocess, preprocess_path_for
from trtpipe.zoo.registry import ModelEntry, WeightsRequest, get_model, load_model, output_stem

log = logging.getLogger("trtpipe.zoo")

DEFAULT_OPSET = 17
MIN_OPSET = 13  # oldest opset with the ops these models need in their current form (e.g. Split/Squeeze inputs)
MAX_OPSET = 21  # newest opset verified here (dynamo exporter)
LEGACY_MAX_OPSET = 20  # the TorchScript exporter's limit (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
DYNAMO_MIN_OPSET = 18  # the dynamo exporter's own opset; its down-conversion fails on these models
EXPORTERS = ("torchscript", "dynamo")
METADATA_KEY = "trtpipe.export"  # ONNX metadata_props key holding the export request (JSON)
EXPORTER_KEY = "trtpipe.exporter"  # metadata: which exporter made the file ("torchscript" | "dynamo")
NOTES_KEY = "trtpipe.export_notes"  # metadata: JSON list, why earlier exporters were not used
INPUT_NAME = "input"
OUTPUT_NAMES = {"classification": "logits"}
EXPORT_BATCH = 2  # traced batch size with a dynamic batch axis (a static export uses batch 1)
CHECK_BATCH = 3  # ONNX Runtime checks another batch size, proving the batch axis is really dynamic
PARITY_RTOL = 1e-3  # ONNX Runtime vs torch, relative to each output's largest magnitude
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one ONNX file without external data


@dataclass(frozen=True)
class ExportResult:
    """What export_model made (or found up to date)."""

    onnx_path: Path
    spec_path: Path  # the PreprocessSpec JSON beside the ONNX
    spec: PreprocessSpec  # spec.weights says which weights the ONNX holds
    seconds: float  # wall time of the call
    onnx_bytes: int
    skipped: bool  # True when an up-to-date export existed and nothing was written
    output_names: tuple[str, ...] = ()
    opset: int = DEFAULT_OPSET  # the ONNX's opset: the one asked for, or the dynamo exporter's after a fallback
    exporter: str = "torchscript"  # torchscript | dynamo: which torch exporter made the file
    parity_max_abs: float | None = None  # max |ONNX Runtime - torch| over every output; None when skipped
    parity_scale: float | None = None  # max |torch| over every output, to judge parity_max_abs by
    notes: tuple[str, ...] = ()  # why exporters tried before ``exporter`` were not used


@dataclass(frozen=True)
class _Attempt:
    exporter: str  # torchscript | dynamo
    opset: int

    def __str__(self) -> str:
        return f"{'TorchScript' if self.exporter == 'torchscript' else 'dynamo'} exporter, opset {self.opset}"


def default_output_path(name: str) -> Path:
    """``mobilenetv2`` -> ``engines/mobilenetv2.onnx``; ``timm:resnet18`` -> ``engines/timm_resnet18.onnx``."""
    return Path("engines") / f"{output_stem(name)}.onnx"


def export_model(
    name: str,
    output: str | Path | None = None,
    *,
    weights: str = "auto",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool | None = None,
    exporter: str | None = None,
    strict_parity: bool = True,
    force: bool = False,
    fuse_preprocess: str | None = None,
    fuse_postprocess: str | None = None,
    nms: str = "auto",
) -> ExportResult:
    """Exports zoo model ``name`` to ONNX and writes its PreprocessSpec beside it.

    Args:
        name: zoo name (``trtpipe zoo list``) or ``timm:<name>``.
        output: the ONNX path. Defaults to ``engines/<name>.onnx``.
        weights: auto | pretrained | random | a checkpoint path (see registry.load_model). Defaults to auto.
        opset: ONNX opset. Defaults to 17.
        dynamic_batch: make the batch axis of the input and of every output dynamic ("batch"). Defaults to
            True for classifiers, False (batch 1, as they are deployed) for detectors and segmenters.
        exporter: torchscript | dynamo. Defaults to the TorchScript exporter at ``opset``, then, when
            export, checker or ONNX Runtime fail, the dynamo exporter at opset 18 (dynamo alone above 20).
        strict_parity: raise when ONNX Runtime and torch differ by more than 1e-3 of an output's scale;
            False logs a warning and returns the figures (the coverage sweep records them). Defaults to True.
        force: export even when an up-to-date export exists.
        fuse_preprocess: "HxW" or "dynamic": prepend the model's preprocessing, so that the ONNX (and engines built
            from it) take uint8 NHWC BGR frames of that size (see ``trtpipe.onnx.fuse_preprocess``); the parity check
            with torch runs on the model before fusing. Defaults to None (float tensors in).
        fuse_postprocess: append the task head (``trtpipe.onnx.fuse_postprocess``) with these options
            (:func:`~trtpipe.spec.postprocess_options` text, e.g. "conf=0.25,iou=0.45,max_det=300,topk=5"). Defaults to
            None (raw outputs).
        nms: with ``fuse_postprocess``, a YOLO head's suppression: onnx | loop | auto (loop where TensorRT-RTX is the
            TensorRT installed, which has no NonMaxSuppression runner; else onnx). Defaults to auto.

    Returns:
        The ExportResult; ``skipped`` says whether an existing export was reused.
    """
    start = time.perf_counter()
    onnx_path = Path(output) if output is not None else default_output_path(name)
    spec_path = preprocess_path_for(onnx_path)
    attempts = _attempts(opset, exporter)
    if onnx_path.suffix != ".onnx":
        raise ConfigError(
            f"output {onnx_path} does not end in .onnx", f"write e.g. -o engines/{output_stem(name)}.onnx"
        )
    request = WeightsRequest.parse(weights)
    entry = get_model(name)  # registry only: no torch
    if dynamic_batch is None:
        dynamic_batch = entry.task == "classification"
    fuse_preprocess = parse_fuse_preprocess(fuse_preprocess) if fuse_preprocess is not None else None
    fingerprint = _fingerprint(name, request, opset, dynamic_batch, exporter)
    if fuse_preprocess is not None:
        fingerprint["fuse_preprocess"] = fuse_preprocess
    if fuse_postprocess is not None:
        nms = resolve_nms(nms)
        fingerprint.update(fuse_postprocess=fuse_postprocess, nms=nms)

    if not force:
        existing = _up_to_date(onnx_path, spec_path, fingerprint)
        if existing is not None:
            log.info(
                "%s is up to date (%s, weights %s, opset %d); skipped export. Hint: --force re-exports",
                onnx_path, name, existing.spec.weights, opset,
            )
            return dataclasses.replace(existing, seconds=time.perf_counter() - start)

    created_dirs = _missing_dirs(onnx_path.parent)
    ensure_writable_dir(onnx_path.parent)  # fail before the slow part, with a clear message
    try:
        made = _export(entry, request, attempts, dynamic_batch, fingerprint, strict_parity)
        # the spec written beside the ONNX must make images its input takes (a registry mistake, caught here)
        check_image_input(made.spec, graph_io(made.model)[0][0], onnx_path)
        if fuse_postprocess is not None:  # on the raw network's outputs, before any preprocessing goes in front
            made = _fuse_post(made, fuse_postprocess, nms)
        if fuse_preprocess is not None:
            made = _fuse(made, fuse_preprocess)
        with atomic_output(onnx_path) as onnx_tmp, atomic_output(spec_path) as spec_tmp:
            onnx.save(made.model, onnx_tmp)
            spec_tmp.write_text(json.dumps(made.spec.to_dict(), indent=2) + "\n")
    except BaseException:
        for directory in created_dirs:  # deepest first: leave no empty folders we made
            _rmdir_if_empty(directory)
        raise
    size = onnx_path.stat().st_size
    seconds = time.perf_counter() - start
    log.info(
        "Exported %s (weights %s) -> %s (%.1f MB, %s, %s batch, outputs %s) + %s in %.1f s",
        name, made.spec.weights, onnx_path, size / 1e6, made.attempt, "dynamic" if dynamic_batch else "static",
        ", ".join(made.output_names), spec_path.name, seconds,
    )
    return ExportResult(
        onnx_path, spec_path, made.spec, seconds, size, skipped=False, output_names=made.output_names,
        opset=made.attempt.opset, exporter=made.attempt.exporter, parity_max_abs=made.parity[0],
        parity_scale=made.parity[1], notes=made.notes,
    )


def _attempts(opset: int, exporter: str | None) -> tuple[_Attempt, ...]:
    """The exporters to try in order, for the opset and exporter asked for."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"opset {opset} is outside {MIN_OPSET}..{MAX_OPSET}", f"use --opset {DEFAULT_OPSET} (the default)"
        )
    if exporter is not None and exporter not in EXPORTERS:
        raise ConfigError(f"exporter {exporter!r} is not one of {', '.join(EXPORTERS)}", "leave it unset to try both")
    if exporter == "torchscript" and opset > LEGACY_MAX_OPSET:
        raise ConfigError(
            f"the TorchScript exporter stops at opset {LEGACY_MAX_OPSET}, asked for {opset}",
            f"use the dynamo exporter, or --opset {LEGACY_MAX_OPSET} or lower",
        )
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise ConfigError(
            f"the dynamo exporter starts at opset {DYNAMO_MIN_OPSET}, asked for {opset}",
            f"use the TorchScript exporter, or --opset {DYNAMO_MIN_OPSET} or higher",
        )
    if exporter == "dynamo" or opset > LEGACY_MAX_OPSET:
        return (_Attempt("dynamo", opset),)
    if exporter == "torchscript":
        return (_Attempt("torchscript", opset),)
    return (_Attempt("torchscript", opset), _Attempt("dynamo", max(opset, DYNAMO_MIN_OPSET)))


def _fingerprint(
    name: str, request: WeightsRequest, opset: int, dynamic_batch: bool, exporter: str | None
) -> dict[str, Any]:
    """The request that decides the ONNX's content; equal fingerprints mean the export can be reused."""
    data: dict[str, Any] = {"model": name, "weights": str(request), "opset": opset, "dynamic_batch": dynamic_batch}
    if exporter is not None:
        data["exporter"] = exporter
    if request.kind == "checkpoint":
        data["checkpoint_sha256"] = sha256_file(request.path)  # same path, new training run -> re-export
    return data


def _up_to_date(onnx_path: Path, spec_path: Path, fingerprint: dict[str, Any]) -> ExportResult | None:
    """Returns the existing export when both files exist and the ONNX was made for ``fingerprint``."""
    if not (onnx_path.is_file() and spec_path.is_file()):
        return None
    try:
        model = onnx.load(onnx_path, load_external_data=False)
        metadata = {p.key: p.value for p in model.metadata_props}
        stored = json.loads(metadata.get(METADATA_KEY, "null"))
        spec = PreprocessSpec.load(spec_path)
    except Exception as exc:  # truncated protobuf, bad JSON, an old spec: any of them means export again
        log.info("existing %s cannot be reused (%s: %s); exporting again", onnx_path, type(exc).__name__, exc)
        return None
    if stored != fingerprint:
        log.info("existing %s was made for %s, asked for %s; exporting again", onnx_path, stored, fingerprint)
        return None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), fingerprint["opset"])
    return ExportResult(
        onnx_path, spec_path, spec, 0.0, onnx_path.stat().st_size, skipped=True,
        output_names=tuple(o.name for o in model.graph.output), opset=opset,
        exporter=metadata.get(EXPORTER_KEY, "torchscript"), notes=tuple(json.loads(metadata.get(NOTES_KEY, "[]"))),
    )


@dataclass(frozen=True)
class _Made:
    model: onnx.ModelProto
    spec: PreprocessSpec
    attempt: _Attempt
    output_names: tuple[str, ...]
    parity: tuple[float, float]  # (max abs difference, max abs torch value)
    notes: tuple[str, ...]


def _export(
    entry: ModelEntry,
    request: WeightsRequest,
    attempts: tuple[_Attempt, ...],
    dynamic_batch: bool,
    fingerprint: dict[str, Any],
    strict_parity: bool,
) -> _Made:
    """Loads the model, then tries each exporter until one passes checker and ONNX Runtime. Writes nothing."""
    import torch

    log.info("Exporting %s (%s) with weights %s, %s", entry.name, entry.source, request, attempts[0])
    loaded = load_model(entry, request)
    spec = loaded.spec
    log.info("%s: weights %s", entry.name, spec.weights)
    names = tuple(getattr(loaded.module, "output_names", None) or (OUTPUT_NAMES.get(entry.task, "output"),))
    generator = torch.Generator().manual_seed(0)
    export_batch, check_batch = (EXPORT_BATCH, CHECK_BATCH) if dynamic_batch else (1, 1)
    sample = torch.randn(export_batch, 3, spec.height, spec.width, generator=generator)
    check_input = torch.randn(check_batch, 3, spec.height, spec.width, generator=generator)

    notes: list[str] = []
    for index, attempt in enumerate(attempts):
        try:
            model = _export_once(loaded.module, sample, attempt, names, dynamic_batch, entry.name)
            parity = _verify_with_onnxruntime(model, loaded.module, check_input, entry.name, names, strict_parity)
        except OnnxModelError as exc:
            notes.append(f"{attempt} failed: {exc.message}")
            if index + 1 == len(attempts):
                if len(notes) == 1:
                    raise
                raise OnnxModelError(f"{entry.name}: every exporter failed: {'; '.join(notes)}", exc.hint) from None
            log.warning("%s: %s failed (%s); trying the %s", entry.name, attempt, exc.message, attempts[index + 1])
            continue
        metadata = {
            METADATA_KEY: json.dumps(fingerprint),
            "trtpipe.weights": spec.weights,
            EXPORTER_KEY: attempt.exporter,
            **({NOTES_KEY: json.dumps(notes)} if notes else {}),
        }
        onnx.helper.set_model_props(model, metadata)
        return _Made(model, spec, attempt, names, parity, tuple(notes))
    raise AssertionError("unreachable: the loop returns or raises")


def _fuse(made: _Made, frames: str) -> _Made:
    """The export with its preprocessing fused in (uint8 frames in); the log says how, and how close to the CPU path."""
    from trtpipe.onnx.fuse_preprocess import fuse_preprocess, parity_note

    fused = fuse_preprocess(made.model, made.spec, frames)
    parity = parity_note(fused)
    log.info("%s; %s", fused.note, parity)
    return dataclasses.replace(made, model=fused.model, spec=fused.spec)


def resolve_nms(nms: str) -> str:
    """``auto`` -> ``loop`` where TensorRT-RTX is the only TensorRT installed (it has no NonMaxSuppression runner),
    else ``onnx``; ``onnx``/``loop`` as given.

    Raises:
        ConfigError: any other value.
    """
    if nms not in ("auto", "onnx", "loop"):
        raise ConfigError(f"--nms {nms!r}: expected auto, onnx or loop", "use --nms auto (the default)")
    if nms != "auto":
        return nms
    from trtpipe.flavors import installed_flavors

    flavors = installed_flavors()
    return "loop" if flavors and all(f.is_rtx for f in flavors) else "onnx"


def _fuse_post(made: _Made, options: str, nms: str) -> _Made:
    """The export with its task head appended (``--fuse-postprocess``); the log says what comes out."""
    from trtpipe.onnx.fuse_postprocess import fuse_postprocess
    from trtpipe.spec import parse_postprocess_options

    fused = fuse_postprocess(made.model, made.spec, nms=nms, **parse_postprocess_options(options))
    log.info("%s", fused.note)
    return dataclasses.replace(made, model=fused.model, spec=fused.spec, output_names=fused.outputs)


def _export_once(module, sample, attempt: _Attempt, names: tuple[str, ...], dynamic_batch: bool, name: str):
    """One exporter: torch.onnx.export, cleanup, size limit, checker and shape inference."""
    from trtpipe.onnx.cleanup import cleanup_onnx

    started = time.perf_counter()
    raw = _torch_export(module, sample, attempt, names, dynamic_batch)
    log.info("torch.onnx.export (%s): %d nodes in %.1f s", attempt, len(raw.graph.node), time.perf_counter() - started)
    model = cleanup_onnx(raw)
    del model.metadata_props[:]
    if len(model.graph.output) != len(names):
        raise OnnxModelError(
            f"{name} returns {len(model.graph.output)} outputs but names {len(names)} ({', '.join(names)})",
            "set output_names on the module to one name per output, in order",
        )
    if model.ByteSize() > MAX_PROTO_BYTES:
        raise OnnxModelError(
            f"{name} exports to {model.ByteSize() / 1e9:.1f} GB, over ONNX's 2 GB single-file limit",
            "pick a smaller model; external-data export is not supported yet",
        )
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxModelError(
            f"the ONNX exported from {name} fails the ONNX checker: {str(exc).splitlines()[0]}",
            "try another --opset; report the model if it persists",
        ) from None
    log.info("cleaned graph: %d nodes; ONNX checker and shape inference passed", len(model.graph.node))
    return model


def _torch_export(module, sample, attempt: _Attempt, names: tuple[str, ...], dynamic_batch: bool) -> onnx.ModelProto:
    """Runs torch.onnx.export into memory with the exporter and opset of ``attempt``."""
    import torch

    buffer = io.BytesIO()
    dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *names)} if dynamic_batch else None
    quiet = _quiet_loggers("onnxscript", "onnx_ir") if not log.isEnabledFor(logging.DEBUG) else contextlib.nullcontext()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad(), quiet:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                module,
                (sample,),
                buffer,
                dynamo=attempt.exporter == "dynamo",
                opset_version=attempt.opset,
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                verbose=False,  # the dynamo exporter prints its progress to stdout otherwise
            )
        except Exception as exc:  # the exporters raise many types (UnsupportedOperatorError, torch._dynamo errors, ...)
            raise OnnxModelError(
                f"torch.onnx.export ({attempt}) failed: {type(exc).__name__}: {_first_line(exc)}",
                "try another --opset (e.g. 18 or 20); run with -v for the exporter's messages",
            ) from None
    for warning in caught:
        log.debug("torch.onnx.export: %s", warning.message)
    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Raises the given loggers to WARNING for the block: the dynamo exporter's optimizer logs every rewrite."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved):
            logger.setLevel(level)


def torch_outputs(value) -> list:
    """A model's return value as a flat list of tensors, in the order the ONNX exporters flatten it."""
    if isinstance(value, dict):
        return [t for item in value.values() for t in torch_outputs(item)]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in torch_outputs(item)]
    return [value]


def _verify_with_onnxruntime(
    model: onnx.ModelProto, module, batch, name: str, names: tuple[str, ...], strict: bool
) -> tuple[float, float]:
    """Runs ``model`` in ONNX Runtime and torch on ``batch``; compares every output.

    Returns:
        (max abs difference, max abs torch value) over all outputs.

    Raises:
        OnnxModelError: ONNX Runtime cannot run the model, an output's count or shape differs, or (``strict``)
            an output differs by more than PARITY_RTOL of its scale.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: batch.numpy()})
    except Exception as exc:  # onnxruntime's Fail / NotImplemented / InvalidGraph (e.g. an op missing at this opset)
        raise OnnxModelError(
            f"{name}: ONNX Runtime cannot run the exported ONNX: {_first_line(exc)}",
            "try another --opset; report the model if it persists",
        ) from None
    with torch.no_grad():
        expected = [t.numpy() for t in torch_outputs(module(batch))]
    if len(got) != len(expected):
        raise OnnxModelError(
            f"{name}: ONNX Runtime gives {len(got)} outputs, torch {len(expected)}", "report the model"
        )
    max_abs = scale = 0.0
    for output_name, ort_out, reference in zip(names, got, expected):
        if ort_out.shape != reference.shape:
            raise OnnxModelError(
                f"{name}: ONNX Runtime output {output_name!r} has shape {ort_out.shape}, torch's {reference.shape} "
                f"at batch {batch.shape[0]}",
                "export with --static-batch, or report the model",
            )
        output_scale = float(np.max(np.abs(reference))) if reference.size else 0.0
        diff = float(np.max(np.abs(ort_out.astype(np.float64) - reference))) if reference.size else 0.0
        # Relative to the output's scale: randomly initialised torchvision models emit logits near 1e-9,
        # where any absolute floor would let every error through.
        tolerance = PARITY_RTOL * max(output_scale, float(np.finfo(np.float32).tiny))
        log.info(
            "ONNX Runtime vs torch, %s, batch %d: max abs diff %.2e (tolerance %.1e)",
            output_name, batch.shape[0], diff, tolerance,
        )
        if not diff <= tolerance:  # also catches NaN
            message = f"{name}: ONNX Runtime and torch output {output_name!r} differ by {diff:.3g}, expected at most {tolerance:.1g}"
            if strict:
                raise OnnxModelError(
                    message,
                    "try another --opset; for set-prediction models whose random weights make query selection "
                    "flip on rounding noise (RT-DETR), --parity warn exports and records the difference",
                )
            log.warning("WARNING: %s", message)
        max_abs, scale = _nan_max(max_abs, diff), max(scale, output_scale)
    return max_abs, scale


def _nan_max(a: float, b: float) -> float:
    """max() that keeps a NaN: one NaN output makes the whole parity NaN, not a silent 0."""
    return a + b if a != a or b != b else max(a, b)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _missing_dirs(directory: Path) -> list[Path]:
    """The folders on the way to ``directory`` that do not exist yet, deepest first."""
    missing = []
    directory = directory if str(directory) else Path(".")
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _rmdir_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass
