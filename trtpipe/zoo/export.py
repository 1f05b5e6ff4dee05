"""Zoo model -> ONNX (+ its preprocess spec), checked, cleaned and verified against torch.

    result = export_model("mobilenetv2")   # engines/mobilenetv2.onnx + engines/mobilenetv2.preprocess.json

Steps: load the model with the weights asked for; export with the TorchScript exporter (opset 17 by
default, in 0.3 s where the dynamo exporter takes 6 s and cannot go below opset 18); fold constants
and clean the graph; ONNX checker and shape inference; run the ONNX in ONNX Runtime on a batch of
another size than the export's and compare with torch; write ONNX and spec atomically.

The request (model, weights, opset, dynamic batch) is stored in the ONNX's metadata, so a second
call with the same request skips the export without importing torch.
"""

from __future__ import annotations

import contextlib
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
from trtpipe.spec import PreprocessSpec, preprocess_path_for
from trtpipe.zoo.registry import WeightsRequest, get_model, load_model, output_stem

log = logging.getLogger("trtpipe.zoo")

DEFAULT_OPSET = 17
MIN_OPSET = 13  # oldest opset with the ops these models need in their current form (e.g. Split/Squeeze inputs)
MAX_OPSET = 21  # newest opset verified here (dynamo exporter)
LEGACY_MAX_OPSET = 20  # the TorchScript exporter's limit (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
METADATA_KEY = "trtpipe.export"  # ONNX metadata_props key holding the export request (JSON)
INPUT_NAME = "input"
OUTPUT_NAMES = {"classification": "logits"}
EXPORT_BATCH = 2  # traced batch size with a dynamic batch axis (a static export uses batch 1)
CHECK_BATCH = 3  # ONNX Runtime checks another batch size, proving the batch axis is really dynamic
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


def default_output_path(name: str) -> Path:
    """``mobilenetv2`` -> ``engines/mobilenetv2.onnx``; ``timm:resnet18`` -> ``engines/timm_resnet18.onnx``."""
    return Path("engines") / f"{output_stem(name)}.onnx"


def export_model(
    name: str,
    output: str | Path | None = None,
    *,
    weights: str = "auto",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    force: bool = False,
) -> ExportResult:
    """Exports zoo model ``name`` to ONNX and writes its PreprocessSpec beside it.

    Args:
        name: zoo name (``trtpipe zoo list``) or ``timm:<name>``.
        output: the ONNX path. Defaults to ``engines/<name>.onnx``.
        weights: auto | pretrained | random | a checkpoint path (see registry.load_model). Defaults to auto.
        opset: ONNX opset. Defaults to 17.
        dynamic_batch: make the batch axis of input and output dynamic ("batch"). Defaults to True.
        force: export even when an up-to-date export exists.

    Returns:
        The ExportResult; ``skipped`` says whether an existing export was reused.
    """
    start = time.perf_counter()
    onnx_path = Path(output) if output is not None else default_output_path(name)
    spec_path = preprocess_path_for(onnx_path)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"opset {opset} is outside {MIN_OPSET}..{MAX_OPSET}", f"use --opset {DEFAULT_OPSET} (the default)"
        )
    if onnx_path.suffix != ".onnx":
        raise ConfigError(
            f"output {onnx_path} does not end in .onnx", f"write e.g. -o engines/{output_stem(name)}.onnx"
        )
    request = WeightsRequest.parse(weights)
    fingerprint = _fingerprint(name, request, opset, dynamic_batch)

    if not force:
        existing = _up_to_date(onnx_path, spec_path, fingerprint)
        if existing is not None:
            size = onnx_path.stat().st_size
            log.info(
                "%s is up to date (%s, weights %s, opset %d); skipped export. Hint: --force re-exports",
                onnx_path, name, existing.weights, opset,
            )
            return ExportResult(onnx_path, spec_path, existing, time.perf_counter() - start, size, skipped=True)

    entry = get_model(name)
    created_dirs = _missing_dirs(onnx_path.parent)
    ensure_writable_dir(onnx_path.parent)  # fail before the slow part, with a clear message
    try:
        model_proto, spec = _export(entry, request, opset, dynamic_batch, fingerprint)
        with atomic_output(onnx_path) as onnx_tmp, atomic_output(spec_path) as spec_tmp:
            onnx.save(model_proto, onnx_tmp)
            spec_tmp.write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    except BaseException:
        for directory in created_dirs:  # deepest first: leave no empty folders we made
            _rmdir_if_empty(directory)
        raise
    size = onnx_path.stat().st_size
    seconds = time.perf_counter() - start
    log.info(
        "Exported %s (weights %s) -> %s (%.1f MB, opset %d, %s batch) + %s in %.1f s",
        name, spec.weights, onnx_path, size / 1e6, opset, "dynamic" if dynamic_batch else "static",
        spec_path.name, seconds,
    )
    return ExportResult(onnx_path, spec_path, spec, seconds, size, skipped=False)


def _fingerprint(name: str, request: WeightsRequest, opset: int, dynamic_batch: bool) -> dict[str, Any]:
    """The request that decides the ONNX's content; equal fingerprints mean the export can be reused."""
    data: dict[str, Any] = {"model": name, "weights": str(request), "opset": opset, "dynamic_batch": dynamic_batch}
    if request.kind == "checkpoint":
        data["checkpoint_sha256"] = sha256_file(request.path)  # same path, new training run -> re-export
    return data


def _up_to_date(onnx_path: Path, spec_path: Path, fingerprint: dict[str, Any]) -> PreprocessSpec | None:
    """Returns the existing spec when both files exist and the ONNX was made for ``fingerprint``."""
    if not (onnx_path.is_file() and spec_path.is_file()):
        return None
    try:
        model = onnx.load(onnx_path, load_external_data=False)
        stored = json.loads({p.key: p.value for p in model.metadata_props}.get(METADATA_KEY, "null"))
        spec = PreprocessSpec.load(spec_path)
    except Exception as exc:  # truncated protobuf, bad JSON, an old spec: any of them means export again
        log.info("existing %s cannot be reused (%s: %s); exporting again", onnx_path, type(exc).__name__, exc)
        return None
    if stored != fingerprint:
        log.info("existing %s was made for %s, asked for %s; exporting again", onnx_path, stored, fingerprint)
        return None
    return spec


def _export(entry, request: WeightsRequest, opset: int, dynamic_batch: bool, fingerprint: dict[str, Any]):
    """Loads, exports, cleans, checks and verifies; returns (ModelProto, PreprocessSpec). Writes nothing."""
    import torch

    from trtpipe.onnx.cleanup import cleanup_onnx

    log.info("Exporting %s (%s) with weights %s, opset %d", entry.name, entry.source, request, opset)
    loaded = load_model(entry, request)
    spec = loaded.spec
    log.info("%s: weights %s", entry.name, spec.weights)
    output_name = OUTPUT_NAMES.get(entry.task, "output")
    generator = torch.Generator().manual_seed(0)
    export_batch, check_batch = (EXPORT_BATCH, CHECK_BATCH) if dynamic_batch else (1, 1)
    sample = torch.randn(export_batch, 3, spec.height, spec.width, generator=generator)

    started = time.perf_counter()
    raw = _torch_export(loaded.module, sample, opset, output_name, dynamic_batch)
    log.info("torch.onnx.export: %d nodes in %.1f s", len(raw.graph.node), time.perf_counter() - started)

    model = cleanup_onnx(raw)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(fingerprint), "trtpipe.weights": spec.weights})
    if model.ByteSize() > MAX_PROTO_BYTES:
        raise OnnxModelError(
            f"{entry.name} exports to {model.ByteSize() / 1e9:.1f} GB, over ONNX's 2 GB single-file limit",
            "pick a smaller model; external-data export is not supported yet",
        )
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxModelError(
            f"the ONNX exported from {entry.name} fails the ONNX checker: {str(exc).splitlines()[0]}",
            "try another --opset; report the model if it persists",
        ) from None
    log.info("cleaned graph: %d nodes; ONNX checker and shape inference passed", len(model.graph.node))

    check_input = torch.randn(check_batch, 3, spec.height, spec.width, generator=generator)
    _verify_with_onnxruntime(model, loaded.module, check_input, entry.name)
    return model, spec


def _torch_export(module, sample, opset: int, output_name: str, dynamic_batch: bool) -> onnx.ModelProto:
    """Runs torch.onnx.export into memory; the TorchScript exporter up to opset 20, dynamo above."""
    import torch

    buffer = io.BytesIO()
    dynamic_axes = {INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    # The TorchScript exporter is deprecated but gives exactly the opset asked for, and fast; the
    # dynamo exporter starts at opset 18 and its down-conversion to 17 fails on these models.
    use_dynamo = opset > LEGACY_MAX_OPSET
    quiet = _quiet_loggers("onnxscript", "onnx_ir") if not log.isEnabledFor(logging.DEBUG) else contextlib.nullcontext()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad(), quiet:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                module,
                (sample,),
                buffer,
                dynamo=use_dynamo,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[output_name],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                verbose=False,  # the dynamo exporter prints its progress to stdout otherwise
            )
        except Exception as exc:  # the exporters raise many types (UnsupportedOperatorError, torch._dynamo errors, ...)
            raise OnnxModelError(
                f"torch.onnx.export ({'dynamo' if use_dynamo else 'TorchScript'} exporter, opset {opset}) failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
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


def _verify_with_onnxruntime(model: onnx.ModelProto, module, batch, name: str) -> float:
    """Runs ``model`` in ONNX Runtime and torch on ``batch``; raises when outputs differ beyond FP32 noise."""
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: batch.numpy()})[0]
    with torch.no_grad():
        expected = module(batch).numpy()
    if got.shape != expected.shape:
        raise OnnxModelError(
            f"{name}: ONNX Runtime output shape {got.shape} differs from torch's {expected.shape} "
            f"at batch {batch.shape[0]}",
            "export with --static-batch, or report the model",
        )
    max_diff = float(np.max(np.abs(got - expected)))
    # Relative to the output's scale: randomly initialised torchvision models emit logits near 1e-9,
    # where any absolute floor would let every error through.
    tolerance = 1e-3 * max(float(np.max(np.abs(expected))), float(np.finfo(np.float32).tiny))
    log.info("ONNX Runtime vs torch, batch %d: max abs diff %.2e (tolerance %.1e)", batch.shape[0], max_diff, tolerance)
    if not max_diff <= tolerance:  # also catches NaN
        raise OnnxModelError(
            f"{name}: ONNX Runtime and torch outputs differ by {max_diff:.3g}, expected at most {tolerance:.1g}",
            "try another --opset; report the model if it persists",
        )
    return max_diff


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
