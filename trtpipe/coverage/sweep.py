"""One model through every coverage stage, and the sweep over many (each model in its own process).

Stages per model: export (TorchScript exporter, opset 17; on failure the dynamo exporter, opset 18),
ONNX checker, ONNX Runtime parity against the source framework, TensorRT parser verdict; when the
parser rejects the model, graph surgery and then other opsets, as a deployment engineer would;
TensorRT-RTX build on the CPU and its time; an INT8 Q/DQ ONNX and its build; and, for detection and
segmentation, the Pipeline with its post-processing on real photos on the ONNX Runtime path.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trtpipe.errors import TrtpipeError

log = logging.getLogger("trtpipe.coverage")

FALLBACK_OPSETS = ((18, "dynamo"), (13, "torchscript"))  # (opset, exporter): other opsets when the parser rejects
PHOTOS = ("astronaut", "chelsea", "coffee")  # scikit-image's real photos
MODEL_TIMEOUT_S = 1800


@dataclass
class CoverageRow:
    """One model's result; the JSON report holds exactly these keys (issue 6)."""

    name: str
    task: str
    source: str
    exported: bool = False
    ort_parity_max_abs: float | None = None
    trt_parser_ok: bool | None = None
    rtx_build_ok: bool | None = None
    build_seconds: float | None = None
    int8_qdq_ok: bool | None = None
    weights: str = "none"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["ort_parity_max_abs"] is not None and not math.isfinite(data["ort_parity_max_abs"]):
            data["ort_parity_max_abs"] = str(data["ort_parity_max_abs"])  # JSON has no NaN
        return data


def cover_model(name: str, workdir: Path, *, int8: bool = True) -> CoverageRow:
    """Runs every stage for zoo model ``name`` in this process; failures become notes, not exceptions."""
    from trtpipe.coverage.catalog import load_sources
    from trtpipe.zoo.registry import get_model

    load_sources()
    entry = get_model(name)
    row = CoverageRow(name, entry.task, entry.source)
    if entry.source == "no source installable here":
        row.notes.append(entry.description)
        return row
    stages = (_export_stage, _parser_stage, _build_stage) + ((_int8_stage,) if int8 else ()) + (_pipeline_stage,)
    state: dict = {"entry": entry, "workdir": workdir}
    for stage in stages:
        try:
            if stage(row, state) is False:
                break
        except Exception as exc:  # one model's failure must not stop the sweep: record it
            row.notes.append(f"{stage.__name__.strip('_').replace('_stage', '')} failed: {_describe(exc)}")
            log.debug("%s: %s", name, exc, exc_info=True)
            break
    return row


def _export_stage(row: CoverageRow, state: dict) -> bool:
    from trtpipe.coverage.export import export_for_coverage
    from trtpipe.zoo.registry import output_stem

    entry = state["entry"]
    path = state["workdir"] / f"{output_stem(entry.name)}.onnx"
    # The zoo exporter's defaults: dynamic batch for classifiers, batch 1 for detectors and segmenters (as
    # deployed); the TorchScript exporter at opset 17, then the dynamo exporter at opset 18 when it fails.
    result = export_for_coverage(entry.name, path)
    dynamic = entry.task == "classification"
    row.exported = True
    row.weights = result.spec.weights
    row.ort_parity_max_abs = _round(result.parity_max_abs)
    row.notes.extend(note[:240] for note in result.notes)  # exporters that failed before the one used
    row.notes.append(f"{result.exporter} exporter, opset {result.opset}, {'dynamic' if dynamic else 'static'} batch; "
                     f"ONNX checker passed; parity {result.parity_max_abs:.2g} on outputs up to {result.parity_scale:.2g}")
    if not result.parity_max_abs <= 1e-3 * max(result.parity_scale, 1.0):
        row.notes.append("ONNX Runtime parity above 1e-3 of the output scale")
    state["export"] = result
    state["onnx"] = result.onnx_path
    return True


def _parser_stage(row: CoverageRow, state: dict) -> bool:
    """Asks the parser; on rejection tries surgery, then other opsets; keeps the first ONNX that parses."""
    import onnx

    from trtpipe.coverage.export import export_for_coverage
    from trtpipe.onnx.surgery import apply_surgery

    verdict = _parser_verdict(state["onnx"])
    if verdict.parsed:
        row.trt_parser_ok = True
        return True
    row.notes.append(f"parser rejected opset-{state['export'].opset} ONNX: {_verdict_text(verdict)}")
    original = state["onnx"]
    rewritten, applied = apply_surgery(onnx.load(original))
    candidate = original.with_name(original.stem + ".surgery.onnx")
    onnx.save(rewritten, candidate)
    verdict = _parser_verdict(candidate)
    row.notes.append(f"surgery: {', '.join(applied) or 'nothing applicable'} -> "
                     f"{'parsed' if verdict.parsed else 'still rejected: ' + _verdict_text(verdict)}")
    if verdict.parsed:
        row.trt_parser_ok, state["onnx"] = True, candidate
        return True
    for opset, exporter in FALLBACK_OPSETS:
        other = original.with_name(f"{original.stem}.opset{opset}.onnx")
        try:
            result = export_for_coverage(row.name, other, opset=opset, exporter=exporter)
        except TrtpipeError as exc:
            row.notes.append(f"opset {opset}: export failed ({exc.message[:120]})")
            continue
        verdict = _parser_verdict(other)
        row.notes.append(f"opset {opset} ({result.exporter}): {'parsed' if verdict.parsed else _verdict_text(verdict)}")
        if verdict.parsed:
            row.trt_parser_ok, state["onnx"] = True, other
            return True
    row.trt_parser_ok = False
    return False


def _build_stage(row: CoverageRow, state: dict) -> bool:
    from trtpipe.builder.builder import build_engine
    from trtpipe.spec import BuildConfig

    onnx_path = state["onnx"]
    _copy_spec(state["export"].onnx_path, onnx_path)
    try:
        result = build_engine(onnx_path, config=BuildConfig(flavor="tensorrt_rtx"), force=True)
    except TrtpipeError as exc:
        row.rtx_build_ok = False
        row.notes.append(f"TensorRT-RTX build failed: {exc.message[:300]}")
        return True  # the ONNX Runtime pipeline still runs
    row.rtx_build_ok = True
    row.build_seconds = round(result.sidecar.build_seconds, 2)
    row.notes.append(f"engine {result.sidecar.engine_bytes / 1e6:.1f} MB ({result.sidecar.trt_flavor} {result.sidecar.trt_version})")
    result.engine_path.unlink()  # the sweep keeps its numbers, not hundreds of MB of engines
    return True


def _int8_stage(row: CoverageRow, state: dict) -> bool:
    from trtpipe.coverage.int8 import qdq_onnx_for_coverage

    outcome = qdq_onnx_for_coverage(state["onnx"], state["export"].spec, photos=PHOTOS)
    row.int8_qdq_ok = outcome.ok
    row.notes.append(f"INT8: {outcome.summary}")
    return True


def _pipeline_stage(row: CoverageRow, state: dict) -> bool:
    if row.task == "classification":
        return True
    from trtpipe.coverage.run_pipeline import run_on_photos

    row.notes.append(f"pipeline (onnxruntime, {len(PHOTOS)} photos): {run_on_photos(row.name, state['onnx'], PHOTOS)}")
    return True


def _parser_verdict(path: Path):
    from trtpipe.inspect import inspect_onnx

    return inspect_onnx(path, "tensorrt_rtx").parser


def _verdict_text(verdict) -> str:
    if verdict.unsupported_ops:
        return "no importer for " + ", ".join(f"{op} x{len(names)}" for op, names in verdict.unsupported_ops.items())
    return "; ".join(verdict.errors)[:300]


def _copy_spec(source_onnx: Path, target_onnx: Path) -> None:
    from trtpipe.spec import preprocess_path_for

    if source_onnx != target_onnx:
        preprocess_path_for(target_onnx).write_text(preprocess_path_for(source_onnx).read_text())


def _describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, TrtpipeError) else str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message[:300]}"


def _round(value: float) -> float:
    return float(f"{value:.3g}") if math.isfinite(value) else value


# ----------------------------------------------------------------------------------------------
# The sweep: one process per model, so that a crash or a leak in one cannot take the others down
# ----------------------------------------------------------------------------------------------


def run_sweep(names, workdir: str | Path, *, int8: bool = True, timeout: float = MODEL_TIMEOUT_S,
              progress=print) -> list[CoverageRow]:
    """Covers each model in a child process; returns the rows in the order given."""
    from trtpipe.coverage.catalog import load_sources
    from trtpipe.zoo.registry import get_model

    load_sources()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, name in enumerate(names, 1):
        started = time.perf_counter()
        out = workdir / f"{name}.row.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "trtpipe.coverage.worker", name, str(workdir), str(out)]
        if not int8:
            command.append("--no-int8")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            failure = None if out.is_file() else f"worker exited {done.returncode}: {_tail(done.stderr)}"
        except subprocess.TimeoutExpired:
            failure = f"timed out after {timeout:.0f} s"
        if failure is None:
            row = CoverageRow(**json.loads(out.read_text()))
        else:
            entry = get_model(name)
            row = CoverageRow(name, entry.task, entry.source, notes=[failure])
        rows.append(row)
        progress(f"[{index}/{len(names)}] {name}: exported={row.exported} parser={row.trt_parser_ok} "
                 f"build={row.rtx_build_ok} int8={row.int8_qdq_ok} ({time.perf_counter() - started:.0f} s)")
    return rows


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])[:400]
