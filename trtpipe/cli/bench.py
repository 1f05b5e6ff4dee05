"""trtpipe bench: time an engine, an ONNX model or a zoo model (PyTorch eager) and write a JSON report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

VERB = "bench"
HELP = "time an engine / ONNX / zoo model at several batch sizes (trtexec's metrics) and write a JSON report"


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes, e.g. 1,8,32") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be positive, e.g. 1,8,32")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_OR_FILE", help="an .engine (with its sidecar), an .onnx, or a zoo model name (torch)")
    parser.add_argument("--batch", type=_batches, default=(1,), metavar="1,8,32", help="batch sizes (default 1)")
    parser.add_argument("--warmup", default="200ms", help="warm-up time, excluded from the statistics (default 200ms)")
    parser.add_argument("--duration", default="3s", help="minimum timed duration per batch and mode (default 3s)")
    parser.add_argument("--iterations-min", type=int, default=10, metavar="N", help="minimum timed iterations (default 10)")
    parser.add_argument("--in-flight", type=int, default=2, metavar="N",
                        help="enqueue-ahead mode: inferences kept queued (default 2)")
    parser.add_argument("--backend", choices=("tensorrt", "onnxruntime", "torch", "auto"),
                        help="default: the file's kind (.engine: tensorrt, .onnx: onnxruntime), torch for a zoo name; "
                             "auto: tensorrt where a GPU is, else the engine's ONNX on ONNX Runtime (labelled CPU fallback)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                        help="torch: the precision to run; files: checked against the file's own")
    parser.add_argument("--weights", default="auto", help="torch backend: auto | pretrained | random | checkpoint path")
    parser.add_argument("--name", help="model name in the report (default: from the spec or sidecar, else the file stem)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU backends: intra-op threads (default: all cores)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: capture and replay a CUDA graph")
    parser.add_argument("--no-transfers", action="store_true", help="TensorRT: time GPU compute without H2D/D2H copies")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end mode (pre/post-processing)")
    parser.add_argument("--profile-layers", action="store_true",
                        help="TensorRT on a GPU: per-layer times (IProfiler) and layer information, in a separate run "
                             "(with --simulate the layer times are fake: it checks the plumbing only)")
    parser.add_argument("--simulate", action="store_true",
                        help="run an .engine's ONNX (from its sidecar) through trtpipe's CPU simulation of TensorRT and "
                             "CUDA, with no GPU: this measures trtpipe's host-side overhead per call (buffers, copies, "
                             "bookkeeping; the ONNX runs in ONNX Runtime), NOT GPU speed. Every row, table and JSON "
                             "is labelled tensorrt-simulated")
    parser.add_argument("--json", metavar="FILE", help="report path (default: reports/<model>_<backend>_<precision>.json)")


def run(args: argparse.Namespace) -> int:
    from trtpipe.io import check_outputs

    check_outputs(files={"--json": args.json}, dirs={"--json (default reports/)": None if args.json else "reports"})
    from trtpipe.bench.measure import MeasureSettings, StderrProgress
    from trtpipe.bench.runner import run_bench
    from trtpipe.bench.stats import parse_duration
    from trtpipe.bench.targets import open_target

    settings = MeasureSettings(
        warmup_s=parse_duration(args.warmup),
        duration_s=parse_duration(args.duration),
        iterations_min=args.iterations_min,
        in_flight=args.in_flight,
    )
    backend, fallback = _resolve_backend(args)
    target = open_target(
        args.model, backend=backend, precision=args.precision, weights=args.weights, cuda_graph=args.cuda_graph,
        transfers=not args.no_transfers, name=args.name, threads=args.threads, simulate=args.simulate,
    )
    with target:
        if fallback:
            target.backend["fallback"] = True
            target.notes.append(f"CPU fallback ({fallback}): the engine's {target.model['precision']} network ONNX "
                                f"{target.model['file']} ran on {target.engine.backend}")
        out = Path(args.json or f"reports/{target.model['name'].replace(':', '_')}_{target.engine.backend}_{target.model['precision']}.json")
        command = "trtpipe bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None
        # Saved after every result: a crash or a second Ctrl-C still leaves what was measured.
        report = run_bench(
            target, args.batch, settings, transfers=not args.no_transfers, end_to_end=not args.no_end_to_end,
            progress_factory=StderrProgress, command=command, on_result=lambda r: _save_partial(r, out),
        )
        if args.profile_layers and not report.partial:
            from trtpipe.bench.layers import profile_layers

            report.layer_profile = profile_layers(target, max(args.batch), settings)
    report.save(out)
    _print_summary(report, out)
    if report.partial:
        print(f"trtpipe bench: interrupted; PARTIAL report written to {out} ({report.partial_reason})", file=sys.stderr)
        return 130
    return 0


def _resolve_backend(args) -> tuple[str | None, str | None]:
    """``--backend auto``: tensorrt where a GPU answers, else onnxruntime, and the reason for the fallback."""
    if args.simulate:  # the simulation stands in for the GPU: auto means the engine's own backend
        return (None if args.backend == "auto" else args.backend), None
    if args.backend != "auto":
        return args.backend, None
    if not Path(args.model).suffix.lower() in (".onnx", ".engine", ".plan", ".trt"):
        return "torch", None  # a zoo name
    from trtpipe.runtime.loader import choose_backend

    choice = choose_backend(args.model, "auto")  # the same rule as Pipeline and infer (C2)
    return choice.name, choice.fallback


def _save_partial(report, out: Path) -> None:
    """Writes the report as it stands, marked partial until the run completes."""
    was = (report.partial, report.partial_reason)
    if not report.partial:
        report.mark_partial("run in progress or crashed")
    report.save(out)
    report.partial, report.partial_reason = was


def _print_summary(report, out: Path) -> None:
    from trtpipe.bench.stats import format_ms

    label = "[SIMULATED: host-side overhead, not GPU speed] " if report.simulated else ""
    for result in report.results:
        name, lat = _headline(result, report.simulated)
        ips = result.images_per_s
        flag = " (partial)" if result.partial else ""
        print(f"{label}batch {result.batch:>3} {result.mode:<10} {name} median {format_ms(lat.median if lat else None)} ms "
              f"p99 {format_ms(lat.p99 if lat else None)} ms, {ips or 0:,.1f} images/s, {result.iterations} iterations{flag}")
    weights = " RANDOM WEIGHTS," if report.random_weights else ""
    simulated = " SIMULATED (host-side overhead only, no GPU)," if report.simulated else ""
    print(f"wrote {out}:{simulated} {report.model['name']} {report.model['precision']} on {report.backend['name']},{weights} "
          f"{len(report.results)} results", file=sys.stderr)


def _headline(result, simulated: bool):
    """The metric a summary line shows: the result's latency; for a simulation, a host-clock metric instead,
    because its device stages come from the simulation's fake clock."""
    if not simulated:
        return "latency", result.latency
    for name, label in (("end_to_end", "end-to-end"), ("call", "host call"), ("enqueue", "host enqueue")):
        if result.metrics.get(name) is not None:
            return label, result.metrics[name]
    return "host call", None
