"""Detect objects (YOLOv5/v8 or DETR-style model) and draw the boxes.

    python samples/detect.py engines/yolov8n.engine samples/images/astronaut.jpg -o detections.jpg
    python samples/detect.py engines/yolov8n.onnx samples/images/astronaut.jpg --backend onnxruntime
The model's preprocess spec must say task "detection" (letterbox resize for YOLO).
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
    parser.add_argument("--score", type=float, default=0.25, help="score threshold (default: 0.25)")
    parser.add_argument("-o", "--output", default="detections.jpg")
    args = parser.parse_args()
    onnx = args.model.endswith(".onnx")
    open_pipeline = Pipeline.from_onnx if onnx else Pipeline.from_engine
    image = load_image(args.image)
    with open_pipeline(args.model, backend=args.backend or ("onnxruntime" if onnx else "tensorrt"), score_threshold=args.score) as pipe:
        found = pipe(image)
    for (x1, y1, x2, y2), score, label in zip(found.boxes.astype(int), found.scores, found.labels):
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
        cv2.putText(image, f"{label} {score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
    cv2.imwrite(args.output, image)
    print(f"{len(found)} detections ({found.backend}, {found.times.end_to_end:.1f} ms) -> {args.output}")


if __name__ == "__main__":
    main()
