"""Against a real Triton on 127.0.0.1: classification over HTTP and gRPC, concurrency, bad requests."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http,grpc]' (trtpipe[serve])")
import tritonclient.grpc as tritonclient_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402


MODEL = "lite0_pipeline"
OUTPUTS = ("class_ids", "scores", "labels")


def infer(client_module, client, data: np.ndarray, dtype: str = "UINT8", **parameters):
    image = client_module.InferInput("image", list(data.shape), dtype)
    image.set_data_from_numpy(data)
    result = client.infer(MODEL, [image], parameters=parameters or None)
    return tuple(result.as_numpy(name)[0] for name in OUTPUTS)


@pytest.fixture(scope="module")
def http_client(lite0_server):
    """A client for the main thread: tritonclient's HTTP client runs on gevent and must stay in its thread."""
    client = tritonclient_http.InferenceServerClient(lite0_server.http_url, network_timeout=60)
    yield client
    client.close()  # open connections would hold Triton's shutdown for its exit timeout


@pytest.fixture(scope="module")
def thread_infer(lite0_server):
    """``infer(data)`` usable from many threads: one HTTP client per thread."""
    local, clients = threading.local(), []

    def infer_in_thread(data, dtype="UINT8", **parameters):
        if not hasattr(local, "client"):
            local.client = tritonclient_http.InferenceServerClient(lite0_server.http_url, network_timeout=60)
            clients.append(local.client)
        return infer(tritonclient_http, local.client, data, dtype, **parameters)

    yield infer_in_thread
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def reference(lite0_server, photos):
    """In-process trtpipe Pipeline results (ONNX Runtime) for the photos."""
    from trtpipe.pipeline.pipeline import Pipeline

    with Pipeline.from_onnx(lite0_server.onnx_path, topk=5) as pipe:
        return {name: pipe(image) for name, image in photos.items()}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_pipeline_classifies_chelsea_as_egyptian_cat(lite0_server, encoded, reference, protocol):
    module = tritonclient_grpc if protocol == "grpc" else tritonclient_http
    url = lite0_server.grpc_url if protocol == "grpc" else lite0_server.http_url
    with module.InferenceServerClient(url) as client:
        class_ids, scores, labels = infer(module, client, encoded["chelsea"], topk=3)

    expected = reference["chelsea"]
    assert class_ids.tolist() == list(expected.indices[:3])  # the server runs trtpipe's own pre/post code
    # Same code, same model; the bundled Triton's stub runs OpenCV 4.11 (NumPy 1.x), this process OpenCV 5,
    # whose resampling differs slightly: measured 0.006 on chelsea's top score. Same OpenCV: identical.
    np.testing.assert_allclose(scores, expected.scores[:3], atol=0.02)
    assert class_ids.dtype == np.int32 and scores.dtype == np.float32 and len(labels) == 3
    assert 285 in class_ids.tolist() and b"Egyptian cat" in labels.tolist()


def test_real_weights_give_real_answers_over_http(lite0_server, encoded, http_client):
    """coffee is espresso; chelsea a domestic cat, 282 "tiger cat" with 285 "Egyptian cat" second.

    The zoo normalises EfficientNet-Lite0 as its TensorFlow Lite checkpoint was trained, (x - 127) / 128;
    ImageNet mean/std would rank 285 first but makes every prediction less confident (see the zoo).
    """
    class_ids, _, labels = infer(tritonclient_http, http_client, encoded["chelsea"])
    assert class_ids[0] in {281, 282, 283, 284, 285} and 285 in class_ids[:2].tolist()
    assert b"Egyptian cat" in labels[:2].tolist()
    if "coffee" in encoded:
        class_ids, _, labels = infer(tritonclient_http, http_client, encoded["coffee"])
        assert (class_ids[0], labels[0]) == (967, b"espresso")


def test_sixteen_concurrent_clients_get_the_sequential_answers(lite0_server, encoded, http_client, thread_infer):
    names = list(encoded) * 8  # 32 requests, 16 in flight
    sequential = {name: infer(tritonclient_http, http_client, encoded[name]) for name in encoded}
    before = _batch_stats(http_client, "lite0")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: thread_infer(encoded[n]), names, timeout=120))

    for name, (class_ids, scores, labels) in zip(names, answers):
        assert class_ids.tolist() == sequential[name][0].tolist() and labels.tolist() == sequential[name][2].tolist()
        np.testing.assert_allclose(scores, sequential[name][1], atol=1e-4)
    inferences, executions = (a - b for a, b in zip(_batch_stats(http_client, "lite0"), before))
    assert inferences == len(names) and executions < inferences, "Triton's dynamic batcher merged no requests"


def _batch_stats(client, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model)["model_stats"][0]
    return stats["inference_count"], stats["execution_count"]


@pytest.mark.parametrize(
    "case, data, dtype, message",
    [
        ("wrong dtype", np.zeros((1, 100), np.float32), "FP32", "data-type"),
        ("wrong shape", np.zeros((1, 2, 50), np.uint8), "UINT8", "shape"),
        ("empty bytes", np.zeros((1, 0), np.uint8), "UINT8", "empty"),
        ("not an image", np.frombuffer(b"this is not a picture" * 10, np.uint8).reshape(1, -1), "UINT8", "not an image"),
    ],
)
def test_bad_requests_get_errors_and_the_next_good_one_succeeds(lite0_server, encoded, http_client, case, data, dtype, message):
    with pytest.raises(InferenceServerException, match=message):
        infer(tritonclient_http, http_client, data, dtype)
    class_ids, _, _ = infer(tritonclient_http, http_client, encoded["coffee"], topk=1)
    assert len(class_ids) == 1


def test_topk_parameter(lite0_server, encoded, http_client):
    assert len(infer(tritonclient_http, http_client, encoded["coffee"], topk=7)[0]) == 7
    assert len(infer(tritonclient_http, http_client, encoded["coffee"])[0]) == 5  # the exported default
    with pytest.raises(InferenceServerException, match="topk"):
        infer(tritonclient_http, http_client, encoded["coffee"], topk=0)


def test_a_bad_request_in_a_batch_does_not_fail_its_neighbours(lite0_server, encoded, thread_infer):
    junk = np.frombuffer(b"\xff\xd8 truncated jpeg" * 4, np.uint8).reshape(1, -1)
    cases = [encoded["chelsea"], junk] * 8

    def attempt(data):
        try:
            return thread_infer(data)[0][0]
        except InferenceServerException as exc:
            return str(exc)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(attempt, cases, timeout=120))
    assert all(isinstance(a, (int, np.integer)) for a in answers[0::2])
    assert all("not an image" in a for a in answers[1::2])


def test_sample_client_prints_labels(lite0_server, tmp_path, photos, capsys, monkeypatch):
    import cv2
    import importlib.util
    from pathlib import Path

    path = tmp_path / "chelsea.png"
    cv2.imwrite(str(path), photos["chelsea"])
    sample = Path(__file__).parents[2] / "samples" / "triton_client.py"
    module_spec = importlib.util.spec_from_file_location("triton_client_sample", sample)
    sample_module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(sample_module)
    for protocol, url in (("http", lite0_server.http_url), ("grpc", lite0_server.grpc_url)):
        monkeypatch.setattr("sys.argv", ["triton_client.py", str(path), "--url", url, "--protocol", protocol, "--topk", "3"])
        sample_module.main()
        assert "Egyptian cat (285)" in capsys.readouterr().out
