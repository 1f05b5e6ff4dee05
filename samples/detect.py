"""Detect objects (YOLOv5/v8 or DETR-style model) and draw the boxes.

    python samples/detect.py engines/yolov8n_fp16.engine samples/images/astronaut.jpg -o detections.jpg
    python samples/detect.py engines/yolov8n.onnx samples/images/astronaut.jpg

The model's preprocess spec must say task "detection" (letterbox resize for YOLO); class names come from
its label set (the zoo's COCO detectors: coco80).
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
    parser.add_argument("--score", type=float, default=0.25, help="score threshold (default: 0.25)")
    parser.add_argument("-o", "--output", default="detections.jpg")
    args = parser.parse_args()
    open_pipeline = Pipeline.from_onnx if args.model.endswith(".onnx") else Pipeline.from_engine
    image = load_image(args.image)
    with open_pipeline(args.model, backend=args.backend, score_threshold=args.score) as pipe:
        print(f"running {pipe.describe()}")
        found = pipe(image)
    for (x1, y1, x2, y2), score, label in zip(found.boxes.astype(int), found.scores, found.labels):
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
        cv2.putText(image, f"{label} {score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
    cv2.imwrite(args.output, image)
    best = ", ".join(f"{label} {score:.2f}" for label, score in zip(found.labels[:5], found.scores[:5]))
    print(f"{len(found)} detections{': ' + best if best else ''} ({found.ran_on}, {found.times.end_to_end:.1f} ms) "
          f"-> {args.output}")


if __name__ == "__main__":
    main()
