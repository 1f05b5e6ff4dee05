"""How many models of a public corpus trtpipe builds, of those TensorRT-RTX's own parser and builder build.

    .venv/bin/python tests/perf/corpus_intake.py [--corpus data|node|all] [--variant as-is|shapeless-outputs|rank-clash]
                                                 [--limit N] [--json OUT]

The corpus is the one that ships inside the installed ``onnx`` wheel: the backend test models under
``onnx/backend/test/data`` (pytorch-converted, pytorch-operator, simple, light: one folder per model, with
input tensors) and, with ``--corpus node``, the ~1,900 single-operator models ``onnx.backend.test.case.node``
generates. Every model is built twice with the same input shapes (those of its first test-data set):

1. directly with TensorRT-RTX (parser + builder, strongly typed, one profile at the test inputs' shapes);
2. with ``trtpipe.builder.build_engine`` (FP32, ``--shapes`` at the same shapes for inputs with dynamic dims).

``--variant`` rewrites every model first the way hand-built graphs and some exporters write them (the kinds
the ONNX checker's strict mode refuses): ``shapeless-outputs`` clears the shape field of every graph output;
``rank-clash`` declares the first intermediate tensor with rank 0 in value_info (models with no intermediate
tensor are left out of that variant).

It prints how many models (1) built, how many of those (2) built, and, per refusal message kind, how many
trtpipe refused that TensorRT built. Builds run in worker processes (a native crash in one model takes down
its worker only; the model is recorded as crashed and the next worker carries on).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def data_corpus() -> list[tuple[str, Path, list[tuple[int, ...]]]]:
    """(name, model path, input shapes) for the backend test models stored in the onnx wheel."""
    import onnx
    from onnx import numpy_helper

    root = Path(onnx.__file__).parent / "backend" / "test" / "data"
    models = []
    for model_path in sorted(root.glob("*/*/model.onnx")):
        data = sorted((model_path.parent / "test_data_set_0").glob("input_*.pb"))
        shapes = []
        for pb in data:
            tensor = onnx.TensorProto()
            tensor.ParseFromString(pb.read_bytes())
            shapes.append(tuple(numpy_helper.to_array(tensor).shape))
        models.append((f"{model_path.parent.parent.name}/{model_path.parent.name}", model_path, shapes))
    return models


def node_corpus(folder: Path) -> list[tuple[str, Path, list[tuple[int, ...]]]]:
    """The generated single-operator models, written to ``folder``; input shapes from their test inputs."""
    import warnings

    import numpy as np
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        cases = collect_testcases(None)
    models = []
    for case in cases:
        if case.model is None or not case.data_sets:
            continue
        path = folder / f"{case.name}.onnx"
        onnx.save(case.model, str(path))
        inputs = case.data_sets[0][0]
        shapes = [tuple(np.asarray(x).shape) if isinstance(x, np.ndarray) else None for x in inputs]
        if any(s is None for s in shapes):
            continue  # sequences / optionals: no tensor shape to profile
        models.append((f"node/{case.name}", path, shapes))
    return models


def make_variant(models, variant: str, folder: Path):
    """The models rewritten as ``variant`` (see the module docstring), saved in ``folder``."""
    import onnx

    if variant == "as-is":
        return models
    folder.mkdir(exist_ok=True)
    rewritten = []
    for index, (name, path, shapes) in enumerate(models):
        model = onnx.load(str(path))
        if variant == "shapeless-outputs":
            for output in model.graph.output:
                if output.type.HasField("tensor_type"):
                    output.type.tensor_type.ClearField("shape")
        else:
            outputs = {o.name for o in model.graph.output}
            intermediate = next((t for node in model.graph.node for t in node.output if t and t not in outputs), None)
            if intermediate is None:
                continue
            elem_type = next((v.type.tensor_type.elem_type for v in model.graph.value_info if v.name == intermediate),
                             onnx.TensorProto.FLOAT)
            kept = [v for v in model.graph.value_info if v.name != intermediate]
            del model.graph.value_info[:]
            model.graph.value_info.extend([*kept, onnx.helper.make_tensor_value_info(intermediate, elem_type, [])])
        out = folder / f"{index}.onnx"
        onnx.save(model, str(out))
        rewritten.append((name, out, shapes))
    return rewritten


# ----------------------------------------------------------------------------------------------
# The worker: builds each model of a list, one JSON line per model
# ----------------------------------------------------------------------------------------------


def direct_build(path: Path, shapes) -> str | None:
    """None when TensorRT-RTX parses and builds the model as it is; else its first error."""
    import tensorrt_rtx as trt

    from trtpipe.flavors import get_flavor, make_logger

    logger = make_logger(get_flavor("tensorrt_rtx"))
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        return "parser: " + (parser.get_error(0).desc() if parser.num_errors else "?")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    graph_inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if len(graph_inputs) != len(shapes):
        return f"network has {len(graph_inputs)} inputs, test data {len(shapes)}"
    for tensor, shape in zip(graph_inputs, shapes):
        if -1 in tuple(tensor.shape):
            profile.set_shape(tensor.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    if builder.build_serialized_network(network, config) is None:
        return "builder: " + ("; ".join(logger.errors[-1:]) or "?")
    return None


def trtpipe_build(path: Path, shapes, out_dir: Path) -> str | None:
    """None when trtpipe builds the model; else the one line its CLI would print."""
    from trtpipe.builder.builder import build_engine
    from trtpipe.errors import TrtpipeError
    from trtpipe.onnx.load import graph_io, load_onnx
    from trtpipe.spec import BuildConfig, ShapeRange

    try:
        inputs, _ = graph_io(load_onnx(path, check=False, load_weights=False))
        ranges = tuple(
            ShapeRange(t.name, s, s, s) for t, s in zip(inputs, shapes) if -1 in t.shape and len(s) == len(t.shape)
        )
        build_engine(path, out_dir / "model.engine", BuildConfig(flavor="tensorrt_rtx", shapes=ranges), force=True)
    except TrtpipeError as exc:
        return f"{type(exc).__name__}: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - a bug in trtpipe is a result here, not a stop
        return f"BUG {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def worker(list_file: Path, start: int, results: Path) -> None:
    import logging

    logging.disable(logging.WARNING)  # trtpipe's warnings per model would drown the summary
    entries = json.loads(list_file.read_text())
    with open(results, "a") as out, tempfile.TemporaryDirectory() as scratch:
        for index in range(start, len(entries)):
            name, path, shapes = entries[index]
            shapes = [tuple(s) for s in shapes]
            print(json.dumps({"index": index, "name": name, "started": True}), file=out, flush=True)
            row = {"index": index, "name": name}
            row["direct"] = direct_build(Path(path), shapes)
            row["trtpipe"] = trtpipe_build(Path(path), shapes, Path(scratch)) if row["direct"] is None else "not tried"
            print(json.dumps(row), file=out, flush=True)


# ----------------------------------------------------------------------------------------------


def kind_of(message: str) -> str:
    """A refusal's kind: the message with the model's own path and names cut off."""
    text = message.split(": ", 1)[0] + ": " + message.split(": ", 2)[-1]
    return text[:140]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=("data", "node", "all"), default="data")
    parser.add_argument("--variant", choices=("as-is", "shapeless-outputs", "rank-clash"), default="as-is")
    parser.add_argument("--limit", type=int, help="first N models only")
    parser.add_argument("--json", help="write every model's result here")
    parser.add_argument("--worker", nargs=3, metavar=("LIST", "START", "RESULTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), int(args.worker[1]), Path(args.worker[2]))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trtpipe-corpus-") as scratch:
        scratch = Path(scratch)
        models = []
        if args.corpus in ("data", "all"):
            models += data_corpus()
        if args.corpus in ("node", "all"):
            (scratch / "node").mkdir()
            models += node_corpus(scratch / "node")
        models = models[: args.limit] if args.limit else models
        models = make_variant(models, args.variant, scratch / "variant")
        list_file, results = scratch / "models.json", scratch / "results.jsonl"
        list_file.write_text(json.dumps([(n, str(p), [list(s) for s in shapes]) for n, p, shapes in models]))
        rows: dict[int, dict] = {}
        start = 0
        while start < len(models):
            subprocess.run([sys.executable, __file__, "--worker", str(list_file), str(start), str(results)],
                           env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for line in results.read_text().splitlines():
                row = json.loads(line)
                rows.setdefault(row["index"], {}).update(row)
            done = [i for i, r in rows.items() if "direct" in r]
            crashed = [i for i, r in rows.items() if "direct" not in r]
            for index in crashed:
                rows[index].update(direct="crash (worker died)", trtpipe="not tried")
            start = max(rows) + 1 if rows else len(models)
            del done
    built = [r for r in rows.values() if r["direct"] is None]
    ours = [r for r in built if r["trtpipe"] is None]
    refused = collections.Counter(kind_of(r["trtpipe"]) for r in built if r["trtpipe"] is not None)
    print(f"corpus {args.corpus} ({args.variant}): {len(models)} models; TensorRT-RTX builds {len(built)}; "
          f"trtpipe builds {len(ours)} of those {len(built)} ({time.perf_counter() - started:.0f} s)")
    for kind, count in refused.most_common():
        print(f"  {count:4d}  {kind}")
    for row in sorted(built, key=lambda r: r["name"]):
        if row["trtpipe"] is not None:
            print(f"        {row['name']}: {row['trtpipe'][:160]}")
    if args.json:
        Path(args.json).write_text(json.dumps(sorted(rows.values(), key=lambda r: r["index"]), indent=1) + "\n")


if __name__ == "__main__":
    main()
