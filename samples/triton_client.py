"""Classify images with a Triton server running trtpipe's pipeline model, over HTTP or gRPC.

    trtpipe serve engines/efficientnet_lite0.onnx --http-port 18800 --grpc-port 18801
    python samples/triton_client.py samples/images/chelsea.jpg --url 127.0.0.1:18800
    python samples/triton_client.py samples/images/chelsea.jpg --url 127.0.0.1:18801 --protocol grpc --topk 3

The client needs only tritonclient and numpy: the server decodes and preprocesses. Each image is sent
as its file's bytes (input ``image``, UINT8 [1, nbytes]); top-k travels as a request parameter.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


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


def classify(client_module, client, model: str, image_bytes: bytes, topk: int = 5) -> list[tuple[int, str, float]]:
    """Sends one encoded image; returns (class id, label, score) best first."""
    data = np.frombuffer(image_bytes, dtype=np.uint8).reshape(1, -1)
    image = client_module.InferInput("image", list(data.shape), "UINT8")
    image.set_data_from_numpy(data)
    outputs = [client_module.InferRequestedOutput(name) for name in ("class_ids", "scores", "labels")]
    result = client.infer(model, [image], outputs=outputs, parameters={"topk": topk})
    ids, scores, labels = (result.as_numpy(name)[0] for name in ("class_ids", "scores", "labels"))
    return [(int(i), label.decode(), float(s)) for i, label, s in zip(ids, labels, scores)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--url", default="127.0.0.1:18800", help="host:port of Triton's HTTP (or gRPC) endpoint")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--model", help="pipeline model name (default: the server's one *_pipeline model)")
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args()
    client_module, client = connect(args.url, args.protocol)
    with client:
        model = args.model or pipeline_model(client, args.protocol)
        for path in args.images:
            with open(path, "rb") as f:
                top = classify(client_module, client, model, f.read(), args.topk)
            print(f"{path}: " + ", ".join(f"{label} ({class_id}) {score:.3f}" for class_id, label, score in top))


if __name__ == "__main__":
    main()
