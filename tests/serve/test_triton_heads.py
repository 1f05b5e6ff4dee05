"""Against a real Triton on 127.0.0.1: samples/triton_client.py on detection and segmentation pipelines, and a
network Triton cannot batch (an output without a batch axis) served behind its pipeline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http,grpc]' (trtpipe[serve])")

from tests.intake_models import nonzero_output_model, tiny_detector_model, tiny_segmenter_model  # noqa: E402


@pytest.fixture(scope="module")
def heads_server(triton_installation, tmp_path_factory):
    """tinydet, tinyseg and nz (an output without a batch axis), each with its pipeline model, on free ports."""
    from trtpipe.serve.server import TritonServer, free_port
    from trtpipe.serve.triton_export import export_repository

    folder = tmp_path_factory.mktemp("heads")
    runner = "onnxruntime" if "onnxruntime" in triton_installation.backends else "python"
    repo = folder / "model_repository"
    models = {}
    for name, make in (("tinydet", tiny_detector_model), ("tinyseg", tiny_segmenter_model), ("nz", nonzero_output_model)):
        models[name] = make(folder / f"{name}.onnx")
        export_repository(models[name], repo, onnx_runner=runner)
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), installation=triton_installation)
    with server:
        server.models = models
        yield server
    assert not server.running


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """64x64 PNG: the left quarter red, the rest blue (BGR on disk as OpenCV writes it)."""
    import cv2

    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, :16] = (0, 0, 255)
    pixels[:, 16:] = (255, 0, 0)
    path = tmp_path_factory.mktemp("img") / "quarter.png"
    cv2.imwrite(str(path), pixels)
    return path


@pytest.fixture(scope="module")
def sample_client():
    path = Path(__file__).parents[2] / "samples" / "triton_client.py"
    spec = importlib.util.spec_from_file_location("triton_client_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_sample(sample_client, monkeypatch, capsys, *argv) -> str:
    monkeypatch.setattr("sys.argv", ["triton_client.py", *map(str, argv)])
    sample_client.main()
    return capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sample_client_prints_detections(heads_server, image, sample_client, monkeypatch, capsys, protocol):
    url = heads_server.grpc_url if protocol == "grpc" else heads_server.http_url
    out = run_sample(sample_client, monkeypatch, capsys, image, "--url", url, "--protocol", protocol, "--model", "tinydet_pipeline")
    # Network-input boxes (cx 16 cy 16 w 8 h 8; cx 8 cy 8 w 4 h 4) scaled x2 from the 32x32 input to the 64x64 image.
    assert f"{image}: 2 detections (score >= 0)" in out
    assert "0 (0) 0.900  box x1=24 y1=24 x2=40 y2=40" in out
    assert "1 (1) 0.800  box x1=12 y1=12 x2=20 y2=20" in out
    out = run_sample(sample_client, monkeypatch, capsys, image, "--url", url, "--protocol", protocol,
                     "--model", "tinydet_pipeline", "--min-score", "0.85")
    assert "1 detections (score >= 0.85)" in out and "(1) 0.800" not in out


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sample_client_prints_segmentation_areas_and_saves_masks(heads_server, image, sample_client, monkeypatch, capsys,
                                                                  tmp_path, protocol):
    import cv2

    url = heads_server.grpc_url if protocol == "grpc" else heads_server.http_url
    out = run_sample(sample_client, monkeypatch, capsys, image, "--url", url, "--protocol", protocol,
                     "--model", "tinyseg_pipeline", "--save-masks", tmp_path / "masks")
    lines = out.splitlines()
    assert lines[0] == f"{image}: mask 64x64, 2 classes, largest area first"
    assert lines[1:3] == ["  2 (2) 75.0% of pixels", "  0 (0) 25.0% of pixels"]  # blue, then red
    mask = cv2.imread(str(tmp_path / "masks" / "quarter.mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint16 and mask.shape == (64, 64)
    assert (mask[:, :16] == 0).all() and (mask[:, 16:] == 2).all()


def test_a_network_triton_cannot_batch_serves_behind_its_pipeline(heads_server, image, sample_client, monkeypatch, capsys):
    """R7's model end to end: max_batch_size 0, the pipeline sends batches itself and returns the classification."""
    import cv2

    from trtpipe.pipeline.pipeline import Pipeline

    with Pipeline.from_onnx(heads_server.models["nz"], topk=3) as pipe:
        expected = pipe(cv2.imread(str(image)))
    out = run_sample(sample_client, monkeypatch, capsys, image, "--url", heads_server.http_url, "--model", "nz_pipeline",
                     "--topk", "3")
    shown = ", ".join(f"{label} ({index}) {score:.3f}" for index, label, score in zip(expected.indices, expected.labels, expected.scores))
    assert out.strip() == f"{image}: {shown}"
