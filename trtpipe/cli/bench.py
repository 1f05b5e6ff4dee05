"""trtpipe bench: time an engine, an ONNX model or a zoo model, or load-test a served model, and write a JSON report.

Options follow trtexec (``--shapes``, ``--iterations``, ``--percentile``, ``--exportTimes``, ``--infStreams``)
and, for a served model, perf_analyzer (``--concurrency`` as its ``--concurrency-range``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

VERB = "bench"
HELP = ("time an engine / ONNX / zoo model at several batch sizes (trtexec's metrics), or load-test a Triton-served "
        "model over a concurrency sweep (perf_analyzer's), and write a JSON report")


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes, e.g. 1,8,32") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be positive, e.g. 1,8,32")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trtpipe.cli.common import _DeprecatedAlias

    parser.add_argument("model", metavar="MODEL_OR_FILE", nargs="?",
                        help="an .engine (with its sidecar), an .onnx, or a zoo model name (torch); omit with --url")
    parser.add_argument("--batch", type=_batches, metavar="1,8,32",
                        help="batch sizes (default 1, or axis 0 of --shapes); with --url: images per request")
    parser.add_argument("--shapes", action="append", metavar="NAME:1x3x224x224",
                        help="runtime shape of an input, as trtexec's --shapes (repeat or comma-separate); its axis 0 "
                             "is the batch, replaced by each --batch. Default: the preprocess spec's size")
    parser.add_argument("--warmup", default="200ms", help="warm-up time, excluded from the statistics (default 200ms)")
    parser.add_argument("--duration", default="3s", help="minimum timed duration per batch and mode (default 3s); "
                                                         "with --url: per concurrency level, unless --requests")
    parser.add_argument("--iterations", type=int, default=10, metavar="N",
                        help="run at least N timed iterations per batch and mode, as trtexec (default 10)")
    parser.add_argument("--iterations-min", dest="iterations", type=int, action=_DeprecatedAlias, preferred="--iterations",
                        help=argparse.SUPPRESS)
    parser.add_argument("--percentile", default=None, metavar="P[,P...]",
                        help="percentiles to report, as trtexec (default 90,95,99); the highest is the tail column "
                             "and chart whisker of trtpipe report")
    parser.add_argument("--exportTimes", dest="export_times", metavar="FILE",
                        help="write every timed iteration to FILE as JSON in trtexec's --exportTimes shape "
                             "(fields not measured are null), with batch and mode")
    parser.add_argument("--infStreams", dest="infer_streams", type=int, default=1, metavar="N",
                        help="N execution contexts (TensorRT), or N calls at once on one session (ONNX Runtime); "
                             "the throughput mode runs N concurrent streams (default 1)")
    parser.add_argument("--in-flight", type=int, default=2, metavar="N",
                        help="enqueue-ahead mode: inferences kept queued (default 2)")
    parser.add_argument("--useProfile", dest="use_profile", type=int, metavar="N",
                        help="TensorRT: time every batch on optimization profile N (trtexec's; default: each batch on "
                             "the profile that holds it)")
    parser.add_argument("--refit-from", dest="refit_weights", metavar="MODEL.onnx",
                        help="TensorRT: refit a --stripWeights/--refit engine's weights from this ONNX at load")
    parser.add_argument("--backend", choices=("tensorrt", "onnxruntime", "torch", "auto"),
                        help="default: the file's kind (.engine: tensorrt, .onnx: onnxruntime), torch for a zoo name; "
                             "auto: tensorrt where a GPU is, else the engine's ONNX on ONNX Runtime (labelled CPU fallback)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                        help="torch: the precision to run; files: checked against the file's own; --url: the served "
                             "network's precision, for the report (the server does not say)")
    parser.add_argument("--weights", default="auto", help="torch backend: auto | pretrained | random | checkpoint path")
    parser.add_argument("--name", help="model name in the report (default: from the spec or sidecar, else the file stem; "
                                       "--url: the served model's name)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU backends: intra-op threads (default: all cores)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: capture and replay a CUDA graph")
    parser.add_argument("--no-transfers", action="store_true", help="TensorRT: time GPU compute without H2D/D2H copies")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end mode (pre/post-processing)")
    from trtpipe.cli.common import add_spec_arguments

    add_spec_arguments(parser)  # the end-to-end mode's preprocessing
    parser.add_argument("--profile-layers", action="store_true",
                        help="TensorRT on a GPU: per-layer times (IProfiler) and layer information, in a separate run "
                             "(with --simulate only the layer names are kept: it checks the plumbing)")
    parser.add_argument("--simulate", action="store_true",
                        help="a functional check of an .engine without a GPU: its ONNX (from the sidecar) runs through "
                             "trtpipe's CPU simulation of TensorRT and CUDA in every mode and batch, and the outputs are "
                             "checked. It times nothing; reports list it as a check, never as a figure")
    served = parser.add_argument_group("served model (Triton), as perf_analyzer")
    served.add_argument("--url", metavar="HOST:PORT", help="load-test the Triton server there instead of a local model")
    served.add_argument("--model", dest="served_model", metavar="NAME", help="--url: the served model to load")
    served.add_argument("--model-version", default="", metavar="V", help="--url: model version (default: the server's)")
    served.add_argument("--protocol", choices=("http", "grpc"), default="http", help="--url: protocol of that port (default http)")
    served.add_argument("--concurrency", default="1", metavar="START:END:STEP",
                        help="--url: concurrency levels, as perf_analyzer's --concurrency-range (1:16:2 = 1,3,...,15), "
                             "or a list 1,2,4,8 (default 1)")
    served.add_argument("--requests", type=int, metavar="N",
                        help="--url: requests per level (default: as many as --duration allows)")
    served.add_argument("--input-data", action="append", default=[], metavar="NAME:FILE",
                        help="--url: request data for an input: a .npy sample (no batch axis) or a file's bytes (an "
                             "encoded image); other inputs get random data")
    parser.add_argument("--json", metavar="FILE", help="report path (default: reports/<model>_<backend>_<precision>.json)")
    pipeline = parser.add_argument_group("end to end from image files (--pipeline)")
    pipeline.add_argument("--pipeline", action="store_true",
                          help="images/s from encoded files to results: Pipeline.stream against a sequential loop, and "
                               "each stage alone (read, preprocess, infer, postprocess) to show which one bounds it; "
                               "needs --images; batch = the largest --batch (default report: reports/<model>_pipeline.json)")
    pipeline.add_argument("--images", metavar="DIR", help="--pipeline: a folder of JPEG/PNG images")
    pipeline.add_argument("--workers", type=int, metavar="W",
                          help="--pipeline: decode/preprocess/postprocess threads (default: the split Pipeline.stream "
                               "chooses: every usable core for a GPU engine; on ONNX Runtime's CPU provider half the "
                               "cores, the other half to the engine's --threads)")
    pipeline.add_argument("--max-images", type=int, metavar="N", help="--pipeline: the first N images only")


def run(args: argparse.Namespace) -> int:
    from trtpipe.errors import ConfigError
    from trtpipe.io import check_outputs

    # Before any work: a sweep that runs for minutes must not end unable to write what it measured.
    check_outputs(files={"--json": args.json, "--exportTimes": args.export_times},
                  dirs={"--json (default reports/)": None if args.json else "reports"})
    if args.pipeline:
        if args.url:
            raise ConfigError("--pipeline measures a local model from image files; --url load-tests a served one",
                              "drop --url, or drop --pipeline")
        from trtpipe.pipeline.stream_bench import run_cli

        return run_cli(args)
    if args.url:
        if args.model:
            raise ConfigError(f"got both MODEL_OR_FILE {args.model!r} and --url {args.url}",
                              "bench a local model (MODEL_OR_FILE) or a served one (--url HOST:PORT --model NAME), not both")
        return _run_served(args)
    if not args.model:
        raise ConfigError("bench needs a model: MODEL_OR_FILE, or --url HOST:PORT --model NAME for a served one",
                          "e.g. trtpipe bench engines/mobilenetv2.onnx, or trtpipe bench --url 127.0.0.1:18800 --model lite0")
    return _run_local(args)


def _common(args):
    from trtpipe.bench.stats import parse_duration, parse_percentiles

    percentiles = parse_percentiles(args.percentile) if args.percentile else ()
    return parse_duration(args.warmup), parse_duration(args.duration), percentiles


def _run_local(args) -> int:
    from trtpipe.bench.measure import MeasureSettings, StderrProgress
    from trtpipe.bench.runner import run_bench
    from trtpipe.bench.targets import open_target
    from trtpipe.cli.common import runtime_shapes
    from trtpipe.errors import ConfigError

    started = time.perf_counter()
    for option in ("served_model", "requests"):
        if getattr(args, option):
            raise ConfigError(f"--{option.replace('served_', '')} applies to a served model", "add --url HOST:PORT, or drop it")
    if args.infer_streams < 1:
        raise ConfigError(f"--infStreams is {args.infer_streams}, expected >= 1", "e.g. --infStreams 2")
    if args.simulate and args.export_times:
        raise ConfigError("--exportTimes writes per-iteration timings, and a --simulate run times nothing (its device "
                          "clock is simulated)", "drop --exportTimes, or bench the engine on a GPU")
    warmup, duration, percentiles = _common(args)
    settings = MeasureSettings(warmup_s=warmup, duration_s=duration, iterations_min=args.iterations, in_flight=args.in_flight)
    shapes = runtime_shapes(args.shapes)
    batches = args.batch or _batches_from_shapes(shapes)
    export = Path(args.export_times) if args.export_times else None
    backend, fallback = _resolve_backend(args)
    from trtpipe.cli.common import spec_from_args

    is_file = Path(args.model).suffix.lower() in (".onnx", ".engine", ".plan", ".trt")
    spec = spec_from_args(args, args.model, required=False) if is_file and not args.no_end_to_end else None
    target = open_target(
        args.model, backend=backend, precision=args.precision, weights=args.weights, cuda_graph=args.cuda_graph,
        transfers=not args.no_transfers, name=args.name, threads=args.threads, simulate=args.simulate,
        contexts=args.infer_streams, spec=spec, profile=args.use_profile, refit_from=args.refit_weights,
    )
    times: list | None = [] if export else None
    with target:
        if fallback:
            target.backend["fallback"] = True
            target.notes.append(f"CPU fallback ({fallback}): the engine's {target.model['precision']} network ONNX "
                                f"{target.model['file']} ran on {target.engine.backend}")
        out = Path(args.json or f"reports/{target.model['name'].replace(':', '_')}_{target.engine.backend}_"
                                 f"{target.model['precision']}.json")
        # Saved after every result: a crash or a second Ctrl-C still leaves what was measured.
        report = run_bench(
            target, batches, settings, transfers=not args.no_transfers, end_to_end=not args.no_end_to_end,
            progress_factory=StderrProgress, command=_command(), on_result=lambda r: _save_partial(r, out),
            percentiles=percentiles, streams=args.infer_streams, shapes=shapes, export_times=times,
        )
        if args.profile_layers and not report.partial:
            from trtpipe.bench.layers import profile_layers

            report.layer_profile = profile_layers(target, max(batches), settings)
    report.save(out)
    if export is not None:
        _write_times(export, times)
    _print_local(report)
    return _finish(report, out, export, started)


def _batches_from_shapes(shapes: dict) -> tuple[int, ...]:
    """Without --batch, the batch is axis 0 of --shapes (all inputs must agree), else 1."""
    from trtpipe.errors import ConfigError

    firsts = {shape[0] for shape in shapes.values() if shape}
    if len(firsts) > 1:
        raise ConfigError(f"--shapes give different batches {sorted(firsts)} on axis 0",
                          "give every input the same axis 0, or set the batch sizes with --batch")
    return (firsts.pop(),) if firsts else (1,)


def _run_served(args) -> int:
    from trtpipe.bench.measure import StderrProgress
    from trtpipe.bench.served import LoadSettings, load_input_data, load_test, parse_concurrency
    from trtpipe.cli.common import runtime_shapes
    from trtpipe.errors import ConfigError

    started = time.perf_counter()
    if not args.served_model:
        raise ConfigError(f"--url {args.url} needs the served model's name", "add --model NAME (trtpipe serve prints it)")
    local_only = [flag for flag, on in (("--simulate", args.simulate), ("--cuda-graph", args.cuda_graph),
                                        ("--profile-layers", args.profile_layers), ("--exportTimes", args.export_times),
                                        ("--backend", args.backend), ("--threads", args.threads),
                                        ("--infStreams", args.infer_streams != 1)) if on]
    if local_only:
        raise ConfigError(f"{', '.join(local_only)} time a local model, and --url load-tests a served one",
                          "drop them (the server's configuration decides how it runs)")
    if args.batch and len(args.batch) > 1:
        raise ConfigError(f"--url takes one request batch size, got {list(args.batch)}",
                          "run one sweep per batch size (--batch 1, then --batch 8), each with its own --json")
    warmup, duration, percentiles = _common(args)
    settings = LoadSettings(
        concurrency=parse_concurrency(args.concurrency), protocol=args.protocol, batch=(args.batch or (1,))[0],
        requests=args.requests, duration_s=duration, warmup_s=warmup, percentiles=percentiles,
    )
    files = {spec.rpartition(":")[0]: spec.rpartition(":")[2] for spec in args.input_data}
    name = args.name or args.served_model
    out = Path(args.json or f"reports/{name.replace(':', '_')}_triton-{args.protocol}.json")
    report = load_test(
        args.url, args.served_model, settings, model_version=args.model_version, data=load_input_data(args.input_data),
        data_files=files, shapes=runtime_shapes(args.shapes), name=name, precision=args.precision,
        progress_factory=StderrProgress, command=_command(), on_result=lambda r: _save_partial(r, out),
    )
    report.save(out)
    _print_served(report)
    return _finish(report, out, None, started)


def _command() -> str | None:
    return "trtpipe bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None


def _write_times(path: Path, times: list) -> None:
    import json

    from trtpipe.io import atomic_write_text

    # trtexec writes one object per line inside a JSON list; so does this, for the same line-oriented tools.
    lines = ",\n  ".join(json.dumps(record) for record in times)
    atomic_write_text(path, f"[\n  {lines}\n]\n" if times else "[]\n")


def _resolve_backend(args) -> tuple[str | None, str | None]:
    """``--backend auto``: tensorrt where a GPU answers, else onnxruntime, and the reason for the fallback."""
    if args.simulate:  # the simulation stands in for the GPU: auto means the engine's own backend
        return (None if args.backend == "auto" else args.backend), None
    if args.backend != "auto":
        return args.backend, None
    if Path(args.model).suffix.lower() not in (".onnx", ".engine", ".plan", ".trt"):
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


def _tail(report) -> float:
    from trtpipe.bench.stats import DEFAULT_PERCENTILES

    return max(report.settings.get("percentiles") or DEFAULT_PERCENTILES)


def _print_local(report) -> None:
    """The results as a table on stdout (header row first); a functional check has no figure columns."""
    from trtpipe.bench.render import text_table
    from trtpipe.bench.stats import format_ms, percentile_key

    if report.functional_check:
        header = ("batch", "mode", "inferences run", "outputs", "result")
        rows = [[str(r.batch), r.mode, str(r.iterations), _outputs(r.check), "ran (functional check, not timed)"]
                for r in report.results]
        print(text_table(header, rows))
        return
    tail = _tail(report)
    header = ("batch", "mode", "iterations", "latency", "median ms", f"p{percentile_key(tail)} ms", "images/s", "throughput from")
    rows = []
    for result in report.results:
        lat = result.latency
        kind = {"end_to_end": "end-to-end"}.get(result.mode) or ("host latency" if result.metrics.get("host_latency") else "host call")
        ips = result.images_per_s
        rows.append([str(result.batch), result.mode + (" (partial)" if result.partial else ""), str(result.iterations), kind,
                     format_ms(lat.median if lat else None), format_ms(lat.percentile(tail) if lat else None),
                     "—" if ips is None else f"{ips:,.1f}", result.throughput_source or "—"])
    print(text_table(header, rows))


def _outputs(check) -> str:
    if not check:
        return "—"
    return ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in (check.get("outputs") or {}).items())


def _print_served(report) -> None:
    from trtpipe.bench.render import text_table
    from trtpipe.bench.stats import format_ms

    header = ("concurrency", "batch", "requests", "errors", "requests/s", "images/s", "mean ms", "p50 ms", "p90 ms",
              "p95 ms", "p99 ms", "server mean ms", "server queue ms")
    rows = []
    for r in report.results:
        lat, means = r.latency, (r.server or {}).get("mean_ms") or {}
        rows.append([str(r.concurrency) + (" (partial)" if r.partial else ""), str(r.batch), str(r.iterations), str(r.errors),
                     "—" if r.inferences_per_s is None else f"{r.inferences_per_s:,.1f}",
                     "—" if r.images_per_s is None else f"{r.images_per_s:,.1f}", format_ms(lat.mean if lat else None),
                     *(format_ms(lat.percentile(p) if lat else None) for p in (50, 90, 95, 99)),
                     format_ms(means.get("request")), format_ms(means.get("queue"))])
    print(text_table(header, rows))


def _finish(report, out: Path, export: Path | None, started: float) -> int:
    """The verb's one summary line (stderr): what was measured, where it went, how long it took."""
    elapsed = time.perf_counter() - started
    what = f"{report.model['name']} {report.model['precision']} on {report.backend['name']}"
    if report.served:
        what = (f"served model {report.backend['model']} at {report.backend['url']} over {report.backend['protocol'].upper()}"
                f" (request batch {report.settings['batches'][0]})")
    flags = [flag for flag, on in (("SIMULATED: functional check, nothing timed", report.simulated),
                                   ("RANDOM WEIGHTS", report.random_weights),
                                   ("CPU fallback", report.backend.get("fallback"))) if on]
    kind = "concurrency levels" if report.served else "results"
    extra = f" and {export}" if export else ""
    if report.partial:
        print(f"trtpipe bench: interrupted; PARTIAL report written to {out} ({report.partial_reason})", file=sys.stderr)
        flags.insert(0, "PARTIAL")
    print(f"trtpipe bench: {what}{' (' + '; '.join(flags) + ')' if flags else ''}: {len(report.results)} {kind} "
          f"-> {out}{extra} in {elapsed:.1f} s", file=sys.stderr)
    return 130 if report.partial else 0
