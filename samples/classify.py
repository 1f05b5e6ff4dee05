"""Classify images with an engine or ONNX model, on the public API.

    python samples/classify.py engines/mobilenetv2_fp16.engine samples/images/*.jpg
    python samples/classify.py engines/efficientnet_lite0.onnx samples/images/*.jpg --backend onnxruntime
"""

import argparse

from trtpipe import Pipeline
from trtpipe.pipeline.preprocess import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--backend", choices=("tensorrt", "onnxruntime"))
    args = parser.parse_args()
    onnx = args.model.endswith(".onnx")
    open_pipeline = Pipeline.from_onnx if onnx else Pipeline.from_engine
    with open_pipeline(args.model, backend=args.backend or ("onnxruntime" if onnx else "tensorrt"), topk=3) as pipe:
        for path, result in zip(args.images, pipe([load_image(p) for p in args.images])):
            best = ", ".join(f"{label} {score:.2f}" for label, score in zip(result.labels, result.scores))
            print(f"{path}: {best}  ({result.backend})")
        print(pipe.timings.summary())


if __name__ == "__main__":
    main()
