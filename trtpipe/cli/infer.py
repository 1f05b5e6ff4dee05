"""``trtpipe infer MODEL IMAGES...``: run an engine or ONNX on images and print each one's top-k with the backend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VERB = "infer"
HELP = "run an engine (.engine) or ONNX model on images and print the top-k labels, scores and backend"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a TensorRT engine (with its .json sidecar) or an .onnx with its .preprocess.json")
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--topk", type=int, default=5, help="classes to print per image (default: 5)")
    parser.add_argument(
        "--backend",
        choices=("auto", "tensorrt", "onnxruntime"),
        default="auto",
        help="auto (default): TensorRT for engines where a usable GPU and TensorRT are, else ONNX Runtime on the "
        "engine's network ONNX (same precision; every line says CPU fallback); onnxruntime for .onnx files",
    )
    parser.add_argument("--batch", type=int, default=1, help="images per call, split to the profile max (default: 1)")
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    from trtpipe.io import atomic_write_text, check_outputs

    check_outputs(files={"--json": args.json})
    from trtpipe.pipeline.pipeline import Pipeline
    from trtpipe.pipeline.preprocess import load_image
    from trtpipe.runtime.loader import default_backend

    is_onnx = default_backend(args.model) == "onnxruntime"
    opener = Pipeline.from_onnx if is_onnx else Pipeline.from_engine
    records = []
    with opener(args.model, backend=args.backend, topk=args.topk) as pipe:
        print(f"running {pipe.describe()}")
        for start in range(0, len(args.images), max(1, args.batch)):
            paths = args.images[start : start + max(1, args.batch)]
            for path, result in zip(paths, pipe([load_image(p) for p in paths])):
                _print(path, result)
                records.append({"image": str(path), **result.to_dict()})
        if pipe.spec.random_weights:
            print("note: this model has RANDOM weights; its labels are meaningless")
        print(f"{pipe.backend} {pipe.precision}; timings of the {len(pipe.timings)} call(s) "
              f"(after {pipe.warmup} untimed warm-up passes):\n{pipe.timings.summary()}")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({"model": str(args.model), "results": records}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _print(path: str, result) -> None:
    print(f"{path}  [{result.ran_on}, {result.times.end_to_end:.2f} ms]")
    if hasattr(result, "indices"):
        for index, label, score in zip(result.indices, result.labels, result.scores):
            print(f"  {score:7.4f}  {index:5d}  {label}")
    else:
        print("  " + json.dumps(result.to_dict())[:400])
