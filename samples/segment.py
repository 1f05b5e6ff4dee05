"""Segment an image (SegFormer/PSPNet-style model) and save a colour overlay.

    python samples/segment.py engines/segformer_b0.engine samples/images/coffee.jpg -o overlay.jpg
    python samples/segment.py engines/segformer_b0.onnx samples/images/coffee.jpg --backend onnxruntime
The model's preprocess spec must say task "segmentation".
"""

import argparse

import cv2

from trtpipe import Pipeline
from trtpipe.pipeline.preprocess import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--backend", choices=("tensorrt", "onnxruntime"))
    parser.add_argument("-o", "--output", default="overlay.jpg")
    args = parser.parse_args()
    onnx = args.model.endswith(".onnx")
    open_pipeline = Pipeline.from_onnx if onnx else Pipeline.from_engine
    image = load_image(args.image)
    with open_pipeline(args.model, backend=args.backend or ("onnxruntime" if onnx else "tensorrt")) as pipe:
        segmentation = pipe(image)
    cv2.imwrite(args.output, segmentation.overlay(image))
    print(f"{segmentation.to_dict()['classes'][:5]} ({segmentation.backend}) -> {args.output}")


if __name__ == "__main__":
    main()
