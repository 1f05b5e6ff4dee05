"""`trtpipe bench --url`: a concurrency sweep against the session's real Triton on 127.0.0.1 (bounded request counts),
checked against Triton's own statistics, and the served report through `trtpipe report`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[http,grpc]' (trtpipe[serve])")

from trtpipe.bench.report import BenchReport  # noqa: E402
from trtpipe.cli.main import main  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "images"


def _bench(tmp_path, name: str, *argv: str) -> BenchReport:
    out = tmp_path / f"{name}.json"
    assert main(["bench", *argv, "--warmup", "0", "--json", str(out)]) == 0
    return BenchReport.load(out)


def test_http_sweep_of_the_network_model_matches_the_server_counts(lite0_server, tmp_path, capsys):
    report = _bench(tmp_path, "http", "--url", lite0_server.http_url, "--model", "lite0", "--concurrency", "1:3:2",
                    "--requests", "6", "--name", "efficientnet_lite0", "--precision", "fp32")
    assert [r.concurrency for r in report.results] == [1, 3]  # perf_analyzer's START:END:STEP
    for result in report.results:
        assert result.mode == "concurrency" and result.iterations == 6 and result.errors == 0
        client = result.metrics["client_request"]
        assert client.count == 6 and 0 < client.median <= client.p99
        assert result.images_per_s == pytest.approx(6 / result.wall_s)
        server = result.server
        # Triton counted exactly the timed requests: warm-up excluded, nothing lost, nothing invented
        assert server["success_count"] == 6 and server["inference_count"] == 6 and server["fail_count"] == 0
        means = server["mean_ms"]
        assert 0 < means["compute_infer"] <= means["request"] <= client.max  # the server's share fits in the client's
    assert report.served and report.backend["name"] == "triton-http" and report.backend["instance_kind"] == "KIND_CPU"
    assert report.model["name"] == "efficientnet_lite0" and report.settings["inputs"]["input"]["source"] == "random"

    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split()[:4] == ["concurrency", "batch", "requests", "errors"] and len(table) == 4
    assert captured.err.strip().splitlines()[-1].startswith(f"trtpipe bench: served model lite0 at {lite0_server.http_url} over HTTP")


def test_grpc_sweep_with_a_request_batch(lite0_server, tmp_path):
    report = _bench(tmp_path, "grpc", "--url", lite0_server.grpc_url, "--protocol", "grpc", "--model", "lite0",
                    "--concurrency", "2", "--requests", "4", "--batch", "2")
    (result,) = report.results
    assert result.batch == 2 and result.iterations == 4 and result.server["inference_count"] == 8  # 2 images per request
    assert result.images_per_s == pytest.approx(2 * result.inferences_per_s)
    assert report.backend["name"] == "triton-grpc" and report.settings["inputs"]["input"]["shape"][0] == 2


def test_the_pipeline_model_with_an_encoded_image(lite0_server, tmp_path):
    report = _bench(tmp_path, "pipe", "--url", lite0_server.http_url, "--model", "lite0_pipeline", "--requests", "3",
                    "--input-data", f"image:{SAMPLES / 'chelsea.jpg'}")
    (result,) = report.results
    assert result.errors == 0 and result.server["success_count"] == 3
    network = result.server["other_models"]["lite0 (version 1)"]  # the network the pipeline called through BLS
    assert network["inference_count"] == 3
    assert report.settings["inputs"]["image"]["source"].endswith("chelsea.jpg")


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope"], "model 'nope' is not ready on the Triton server"),
    (["--model", "lite0_pipeline"], "random data needs data (BYTES|UINT8)|random data needs a shape"),
    (["--model", "lite0", "--batch", "64"], "exceeds the max_batch_size 8 of model 'lite0'"),
    (["--model", "lite0", "--concurrency", "4:1"], "is not START:END"),
    (["--model", "lite0", "--requests", "2", "--concurrency", "4"], "fewer than the highest concurrency"),
    (["--model", "lite0", "--simulate"], "--simulate time a local model"),
])
def test_bad_load_tests_are_one_line_with_a_hint(lite0_server, tmp_path, capsys, argv, message):
    out = tmp_path / "x.json"
    assert main(["bench", "--url", lite0_server.http_url, *argv, "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Hint:" in err[0]
    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_no_server_at_the_url(tmp_path, capsys):
    from trtpipe.serve.server import free_port

    url = f"127.0.0.1:{free_port()}"
    assert main(["bench", "--url", url, "--model", "m", "--json", str(tmp_path / "x.json")]) == 2
    assert f"no Triton server answers HTTP at {url}" in capsys.readouterr().err


def test_a_served_sweep_in_the_report(lite0_server, tmp_path, capsys):
    served = _bench(tmp_path, "sweep", "--url", lite0_server.http_url, "--model", "lite0", "--concurrency", "1,2",
                    "--requests", "4")
    capsys.readouterr()
    md = tmp_path / "out" / "c.md"
    assert main(["report", str(served.source), "-o", str(md)]) == 0
    text = md.read_text()
    assert "## Served models (load test)" in text and "## Results" not in text
    assert (tmp_path / "out" / "c_concurrency.png").stat().st_size > 10000
    assert not (tmp_path / "out" / "c_latency.png").exists()  # no local run: no batch chart
    rows = [line for line in text.splitlines() if line.startswith("| lite0 |")]
    assert len(rows) == 2 and all("| triton-http |" in row for row in rows)
    csv_text = (tmp_path / "out" / "c.csv").read_text()
    assert "server_request_mean_ms" in csv_text.splitlines()[0]
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["series", "concurrency"]
    assert json.loads(Path(served.source).read_text())["results"][0]["server"]["success_count"] == 4
