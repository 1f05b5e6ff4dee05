"""Classify images with an engine or ONNX model, on the public API.

    python samples/classify.py engines/mobilenetv2_fp16.engine samples/images/*.jpg
    python samples/classify.py engines/efficientnet_lite0.onnx samples/images/chelsea.jpg

--backend auto (the default) runs an engine with TensorRT where a GPU is, else its network ONNX (same
precision) on ONNX Runtime, and says so on every line.
"""

import argparse

from trtpipe import Pipeline
from trtpipe.pipeline.preprocess import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .engine (with its .json sidecar) or an .onnx (with its .preprocess.json)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto")
    parser.add_argument("--topk", type=int, default=3, help="classes per image (default: 3)")
    args = parser.parse_args()
    open_pipeline = Pipeline.from_onnx if args.model.endswith(".onnx") else Pipeline.from_engine
    with open_pipeline(args.model, backend=args.backend, topk=args.topk) as pipe:
        print(f"running {pipe.describe()}")
        for path, result in zip(args.images, pipe([load_image(p) for p in args.images])):
            best = ", ".join(f"{label} {score:.2f}" for label, score in zip(result.labels, result.scores))
            print(f"{path}: {best}  ({result.ran_on})")
        print(pipe.timings.summary())


if __name__ == "__main__":
    main()
