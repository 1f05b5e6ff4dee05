"""trtpipe triton-export: an engine or ONNX -> a Triton model repository (network model + pipeline model)."""

from __future__ import annotations

import argparse

VERB = "triton-export"
HELP = "write a Triton Inference Server model repository (network + <name>_pipeline) from an engine or ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a TensorRT engine (with its .engine.json sidecar) or an .onnx file")
    parser.add_argument("--repo", default="model_repository", help="the model repository folder (default: model_repository)")
    add_repository_arguments(parser)
    parser.add_argument("--onnx-runner", choices=("onnxruntime", "python"), default="onnxruntime",
                        help="ONNX models: Triton's onnxruntime backend (default, as in NVIDIA's container), or "
                             "ONNX Runtime inside the Python backend for a Triton without that backend")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                        help="write the network model only (no preprocess spec needed)")
    parser.add_argument("--force", action="store_true",
                        help="write a TensorRT-RTX engine's repository although no stock Triton can load it")


def add_repository_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `trtpipe serve`."""
    parser.add_argument("--name", help="network model name (default: the file's stem); the pipeline is <name>_pipeline")
    parser.add_argument("--max-batch", type=int, help="max_batch_size (default: the engine profile's max, 8 for an ONNX)")
    parser.add_argument("--instances", type=int, default=1, help="network model instances (instance_group count, default 1)")
    parser.add_argument("--pipeline-instances", type=int, default=2, help="pipeline model instances (default 2)")
    parser.add_argument("--queue-delay-us", type=int, default=1000,
                        help="dynamic batching: longest wait to fill a preferred batch, in microseconds (default 1000)")
    parser.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false",
                        help="leave Triton's dynamic batcher off (every request runs alone)")
    parser.add_argument("--topk", type=int, default=5, help="classes returned when a request does not ask (default 5)")
    parser.add_argument("--labels", metavar="SET_OR_FILE",
                        help="class names of the pipeline model: a bundled set (imagenet1k, coco80, coco91, ade20k150, "
                             "cityscapes19, voc21) or a text file, one name per line (default: the model's spec)")
    from trtpipe.cli.common import add_spec_arguments

    add_spec_arguments(parser, labels=False)  # --labels above means the same


def export_from_args(args: argparse.Namespace, repo, onnx_runner: str, pipeline: bool = True):
    from trtpipe.cli.common import spec_from_args
    from trtpipe.serve.triton_export import export_repository

    spec = spec_from_args(args, args.model, required=pipeline and getattr(args, "pipeline", True))
    return export_repository(
        args.model,
        repo,
        name=args.name,
        max_batch=args.max_batch,
        instances=args.instances,
        pipeline_instances=args.pipeline_instances,
        queue_delay_us=args.queue_delay_us,
        dynamic_batching=args.dynamic_batching,
        onnx_runner=onnx_runner,
        pipeline=pipeline,
        topk=args.topk,
        labels=args.labels,
        spec=spec,
        force=getattr(args, "force", False),  # triton-export only: serve runs the repository, so it never forces
    )


def run(args: argparse.Namespace) -> int:
    from trtpipe.io import check_outputs

    check_outputs(dirs={"--repo": args.repo})
    result = export_from_args(args, args.repo, args.onnx_runner, args.pipeline)
    for note in result.notes:
        print(f"note: {note}")
    print(result.summary())
    return 0
