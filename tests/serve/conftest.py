"""A real Triton Inference Server on 127.0.0.1 for the serve tests: one per session, always stopped."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.errors import DependencyError


@pytest.fixture(scope="session")
def triton_installation():
    """The Triton these tests run; skips (saying why) only when none can be found."""
    from trtpipe.serve.server import backend_python_bin, find_tritonserver

    try:
        installation = find_tritonserver()
        backend_python_bin(installation)  # the bundled Triton's stub environment, made once (needs the package index)
    except DependencyError as exc:
        pytest.skip(f"no usable Triton Inference Server: {exc}")
    return installation


@pytest.fixture(scope="session")
def lite0_server(triton_installation, zoo_onnx, tmp_path_factory):
    """efficientnet_lite0 (real weights) and its pipeline model, served over HTTP and gRPC on free ports."""
    from trtpipe.serve.server import TritonServer, free_port
    from trtpipe.serve.triton_export import export_repository

    onnx_path = zoo_onnx("efficientnet_lite0")
    runner = "onnxruntime" if "onnxruntime" in triton_installation.backends else "python"
    repo = tmp_path_factory.mktemp("triton") / "model_repository"
    export_repository(onnx_path, repo, name="lite0", max_batch=8, queue_delay_us=2000, onnx_runner=runner)
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), installation=triton_installation)
    with server:
        server.onnx_path = onnx_path
        yield server
    assert not server.running


PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """scikit-image photos as BGR uint8, as cv2 gives images."""
    import skimage.data

    return {name: np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1]) for name in PHOTOS}


@pytest.fixture(scope="session")
def encoded(photos) -> dict[str, np.ndarray]:
    """The photos as PNG file bytes (lossless: the server decodes the very pixels), shaped [1, nbytes] as the pipeline model takes them."""
    import cv2

    return {name: cv2.imencode(".png", image)[1].reshape(1, -1) for name, image in photos.items()}
