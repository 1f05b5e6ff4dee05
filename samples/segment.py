"""Segment an image (SegFormer/PSPNet-style model) and save a colour overlay.

    python samples/segment.py engines/segformer_b0_fp16.engine samples/images/coffee.jpg -o overlay.jpg
    python samples/segment.py engines/segformer_b0.onnx samples/images/coffee.jpg

The model's preprocess spec must say task "segmentation"; class names come from its label set (the zoo's
ADE20K models: ade20k150). The classes are printed largest area first.
"""

import argparse

import cv2

from trtpipe import Pipeline
from trtpipe.pipeline.preprocess import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .engine (with its .json sidecar) or an .onnx (with its .preprocess.json)")
    parser.add_argument("image")
    parser.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto")
    parser.add_argument("-o", "--output", default="overlay.jpg")
    args = parser.parse_args()
    open_pipeline = Pipeline.from_onnx if args.model.endswith(".onnx") else Pipeline.from_engine
    image = load_image(args.image)
    with open_pipeline(args.model, backend=args.backend) as pipe:
        print(f"running {pipe.describe()}")
        segmentation = pipe(image)
    cv2.imwrite(args.output, segmentation.overlay(image))
    print(f"{segmentation.summary()} ({segmentation.ran_on}, {segmentation.times.end_to_end:.1f} ms) -> {args.output}")


if __name__ == "__main__":
    main()
