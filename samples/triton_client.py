"""Send images to a Triton server running trtpipe's pipeline model and print its results, over HTTP or gRPC.

    trtpipe serve engines/efficientnet_lite0.onnx --http-port 18800 --grpc-port 18801
    python samples/triton_client.py samples/images/chelsea.jpg --url 127.0.0.1:18800
    python samples/triton_client.py samples/images/chelsea.jpg --url 127.0.0.1:18801 --protocol grpc --topk 3
    python samples/triton_client.py street.jpg --min-score 0.5              # a detection model: boxes
    python samples/triton_client.py street.jpg --save-masks masks/          # a segmentation model: class areas, masks

The client needs only tritonclient and numpy (OpenCV for --save-masks): the server decodes, preprocesses and runs
the task head. Each image is sent as its file's bytes (input ``image``, UINT8 [1, nbytes]); top-k travels as a
request parameter. The task (classification, detection, segmentation) is read from the pipeline model's config
(its ``task`` parameter), so one client serves every head:

- classification: ``class_ids``, ``scores``, ``labels`` (top-k, best first);
- detection: ``boxes`` [K, 4] (x1, y1, x2, y2 in source pixels), ``scores``, ``class_ids``, ``labels``;
- segmentation: ``mask`` [H, W] (class id per source pixel) and the classes present, largest area first:
  ``class_ids``, ``fractions`` (of the image's pixels), ``labels``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

OUTPUTS = {
    "classification": ("class_ids", "scores", "labels"),
    "detection": ("boxes", "scores", "class_ids", "labels"),
    "segmentation": ("mask", "class_ids", "fractions", "labels"),
}


def connect(url: str, protocol: str):
    """Returns (client module, client) for ``protocol`` "http" or "grpc"."""
    if protocol == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    return client_module, client_module.InferenceServerClient(url)


def pipeline_model(client, protocol: str) -> str:
    """The one ``*_pipeline`` model the server has ready."""
    index = client.get_model_repository_index()
    entries = index.models if protocol == "grpc" else index
    names = [e.name if protocol == "grpc" else e["name"] for e in entries]
    pipelines = [n for n in names if n.endswith("_pipeline")]
    if len(pipelines) != 1:
        sys.exit(f"error: expected one *_pipeline model on the server, found {pipelines or names}; pass --model NAME")
    return pipelines[0]


def task_of(client, model: str, protocol: str) -> str:
    """The pipeline model's task, from the ``task`` parameter `trtpipe triton-export` writes into its config."""
    if protocol == "grpc":
        parameters = client.get_model_config(model).config.parameters
        task = parameters["task"].string_value if "task" in parameters else None
    else:
        task = client.get_model_config(model).get("parameters", {}).get("task", {}).get("string_value")
    if task not in OUTPUTS:
        sys.exit(f"error: model {model!r} has task {task!r}, expected one of {sorted(OUTPUTS)}: is it a trtpipe *_pipeline model?")
    return task


def infer(client_module, client, model: str, task: str, image_bytes: bytes, topk: int = 5) -> dict[str, np.ndarray]:
    """Sends one encoded image; returns the task's outputs for it (the batch axis of 1 removed)."""
    data = np.frombuffer(image_bytes, dtype=np.uint8).reshape(1, -1)
    image = client_module.InferInput("image", list(data.shape), "UINT8")
    image.set_data_from_numpy(data)
    outputs = [client_module.InferRequestedOutput(name) for name in OUTPUTS[task]]
    result = client.infer(model, [image], outputs=outputs, parameters={"topk": topk})
    arrays = {name: result.as_numpy(name)[0] for name in OUTPUTS[task]}
    if "labels" in arrays:
        arrays["labels"] = np.array([label.decode() for label in arrays["labels"]], dtype=object)
    return arrays


def describe(task: str, arrays: dict[str, np.ndarray], min_score: float = 0.0) -> str:
    """One line (classification) or a few (detection, segmentation) describing one image's results."""
    if task == "classification":
        return ", ".join(f"{label} ({i}) {s:.3f}" for i, label, s in zip(arrays["class_ids"], arrays["labels"], arrays["scores"]))
    if task == "detection":
        keep = arrays["scores"] >= min_score
        lines = [f"{int(keep.sum())} detections (score >= {min_score:g})"]
        for box, score, class_id, label in zip(arrays["boxes"][keep], arrays["scores"][keep], arrays["class_ids"][keep], arrays["labels"][keep]):
            x1, y1, x2, y2 = (float(v) for v in box)
            lines.append(f"  {label} ({class_id}) {score:.3f}  box x1={x1:.0f} y1={y1:.0f} x2={x2:.0f} y2={y2:.0f}")
        return "\n".join(lines)
    height, width = arrays["mask"].shape
    lines = [f"mask {width}x{height}, {len(arrays['class_ids'])} classes, largest area first"]
    for class_id, fraction, label in zip(arrays["class_ids"], arrays["fractions"], arrays["labels"]):
        lines.append(f"  {label} ({class_id}) {100 * fraction:.1f}% of pixels")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--url", default="127.0.0.1:18800", help="host:port of Triton's HTTP (or gRPC) endpoint")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--model", help="pipeline model name (default: the server's one *_pipeline model)")
    parser.add_argument("--topk", type=int, default=5, help="classification: classes returned (default 5)")
    parser.add_argument("--min-score", type=float, default=0.0, help="detection: boxes shown from this score (default: all)")
    parser.add_argument("--save-masks", metavar="DIR", help="segmentation: write each mask as a 16-bit PNG of class ids")
    args = parser.parse_args()
    client_module, client = connect(args.url, args.protocol)
    with client:
        model = args.model or pipeline_model(client, args.protocol)
        task = task_of(client, model, args.protocol)
        for path in args.images:
            with open(path, "rb") as f:
                arrays = infer(client_module, client, model, task, f.read(), args.topk)
            print(f"{path}: {describe(task, arrays, args.min_score)}")
            if task == "segmentation" and args.save_masks:
                import cv2

                out = Path(args.save_masks) / (Path(path).stem + ".mask.png")
                out.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out), arrays["mask"])
                print(f"  wrote {out}")


if __name__ == "__main__":
    main()
