"""Starting and stopping Triton: readiness, clean stops on exceptions and SIGTERM, clear errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from trtpipe.cli.main import main
from trtpipe.errors import DependencyError, InputError
from trtpipe.serve.server import ServerError, TritonServer, free_port
from trtpipe.serve.triton_export import export_repository
from trtpipe.spec import PreprocessSpec, preprocess_path_for


@pytest.fixture
def tiny_model(tiny_onnx):
    onnx_path = tiny_onnx("tiny.onnx")
    PreprocessSpec(model="tiny", height=32, width=32, weights="random").save(preprocess_path_for(onnx_path))
    return onnx_path


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT left by closed connections is fine
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_segmentation_pipeline_then_a_raising_block_still_stops_the_server(triton_installation, tiny_onnx, tmp_path):
    """The tiny network's (N, 8, 32, 32) output read as segmentation logits: a mask at the source image's size."""
    import cv2
    import numpy as np
    import tritonclient.http as http

    onnx_path = tiny_onnx("seg.onnx")
    PreprocessSpec(model="seg", height=32, width=32, task="segmentation", resize="stretch").save(preprocess_path_for(onnx_path))
    runner = "onnxruntime" if "onnxruntime" in triton_installation.backends else "python"
    export_repository(onnx_path, tmp_path / "repo", onnx_runner=runner)
    server = TritonServer(tmp_path / "repo", http_port=free_port(), grpc_port=free_port(), installation=triton_installation)
    with pytest.raises(RuntimeError, match="boom"):
        with server:
            assert server.running
            data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8))[1].reshape(1, -1)
            with http.InferenceServerClient(server.http_url) as client:
                image = http.InferInput("image", list(data.shape), "UINT8")
                image.set_data_from_numpy(data)
                mask = client.infer("seg_pipeline", [image]).as_numpy("mask")
            assert mask.shape == (1, 48, 80) and mask.dtype == np.uint16 and mask.max() < 8
            raise RuntimeError("boom")
    assert not server.running and port_is_free(server.http_port) and port_is_free(server.grpc_port)
    assert "Started HTTPService" in server.log_path.read_text()


def test_a_model_that_fails_to_load_is_reported_with_the_log(triton_installation, tmp_path):
    broken = tmp_path / "repo" / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: 0\n')
    (broken / "1" / "model.py").write_text("raise ImportError('this model cannot load')\n")
    server = TritonServer(tmp_path / "repo", http_port=free_port(), grpc_port=free_port(), installation=triton_installation)
    with pytest.raises(ServerError, match="(?s)Triton exited.*this model cannot load.*Hint"):
        server.start()
    assert not server.running


def test_serve_cli_runs_until_sigterm(triton_installation, tiny_model):
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "trtpipe.cli.main", "serve", str(tiny_model),
               "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--tritonserver", str(triton_installation.binary)]
    if triton_installation.bundled:
        command = command[:-2]  # the bundled one is found by itself (and needs its stub set-up)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Triton ready" in line or not line:
                break
        assert any(f"HTTP http://127.0.0.1:{http_port}" in l for l in lines), "".join(lines)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "Triton stopped" in output
    assert port_is_free(http_port) and port_is_free(grpc_port)


def test_no_triton_is_a_clear_error(tiny_model, capsys, monkeypatch):
    import trtpipe.serve.server as server_module

    assert main(["serve", str(tiny_model), "--tritonserver", "/nonexistent/tritonserver"]) == 2
    assert "is not an executable file. Hint: pip install 'trtpipe[serve]'" in capsys.readouterr().err
    monkeypatch.delenv("TRTPIPE_TRITONSERVER", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(server_module, "_bundled", lambda: None)
    with pytest.raises(DependencyError, match="no Triton Inference Server found.*Hint: pip install 'trtpipe\\[serve\\]'"):
        server_module.find_tritonserver()


def test_engine_on_a_triton_without_tensorrt_is_refused(triton_installation, tmp_path, capsys):
    if "tensorrt" in triton_installation.backends:
        pytest.skip("this Triton has the TensorRT backend")
    assert main(["serve", str(tmp_path / "m.engine")]) == 2
    assert "has no TensorRT backend" in capsys.readouterr().err


def test_a_busy_port_is_refused_before_starting(triton_installation, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"port 127.0.0.1:{port} is in use.*Hint: choose another --http-port"):
            TritonServer(tmp_path, http_port=port, grpc_port=free_port(), installation=triton_installation).start()
