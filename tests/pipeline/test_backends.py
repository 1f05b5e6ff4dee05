"""Backend choice (C2) and the CPU fallback of reduced-precision engines (C3), through the Python API and the CLI.

Engines are real TensorRT-RTX builds of a tiny classifier (they build on the CPU, they cannot run here): so
``backend="auto"`` must fall back to ONNX Runtime, run the FP16/Q/DQ network ONNX the engine was parsed from,
and say so in every result; never the FP32 source.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from trtpipe.cli.main import main
from trtpipe.errors import ConfigError, InputError
from trtpipe.pipeline.pipeline import Pipeline
from trtpipe.runtime.loader import choose_backend, load_engine, network_onnx
from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine
from trtpipe.runtime.simulation import make_tiny_classifier, tiny_spec
from trtpipe.spec import BatchRange, BuildConfig, EngineSidecar, sidecar_path_for

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(24, 30, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The tiny classifier (with its preprocess spec) built fp32, fp16 and int8 by TensorRT-RTX; precision -> engine."""
    from trtpipe.builder.builder import build_engine

    folder = tmp_path_factory.mktemp("engines")
    onnx_path = make_tiny_classifier(folder / "tiny.onnx", size=8)
    tiny_spec().save(folder / "tiny.preprocess.json")
    images = folder / "calib"
    images.mkdir()
    for index in range(8):
        cv2.imwrite(str(images / f"{index}.png"), _image(index))
    built = {}
    for precision in ("fp32", "fp16", "int8"):
        config = BuildConfig(flavor="tensorrt_rtx", precision=precision, batch=BatchRange(1, 2, 4),
                             calib_images=str(images) if precision == "int8" else None,
                             fidelity_target="none")  # 8 images of a random tiny network: nothing to hold back
        built[precision] = build_engine(onnx_path, folder / f"tiny_{precision}.engine", config).engine_path
    return built


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_auto_without_a_gpu_runs_the_network_onnx_of_the_precision_built(engines, precision):
    engine = engines[precision]
    sidecar = EngineSidecar.load(sidecar_path_for(engine))
    assert sidecar.network_onnx_precision == precision and sidecar.network_onnx_path.endswith(f".{precision}.onnx")
    with Pipeline.from_engine(engine, topk=3) as pipe:
        result = pipe(_image())
        assert pipe.engine.path.name == f"tiny.{precision}.onnx"  # not the FP32 tiny.onnx
        assert (result.backend, result.precision) == ("onnxruntime-cpu", precision)
        assert "no usable NVIDIA GPU" in result.fallback and result.ran_on == f"onnxruntime-cpu {precision} (CPU fallback)"
        assert result.to_dict()["precision"] == precision and "fallback" in result.to_dict()
        assert f"its {precision} network ONNX" in pipe.describe() and "CPU fallback" in pipe.describe()
    graph_ops = {node.op_type for node in onnx.load(str(pipe.engine.path)).graph.node}
    assert ("QuantizeLinear" in graph_ops) == (precision == "int8")


def test_explicit_onnxruntime_on_an_engine_is_not_a_fallback(engines):
    with Pipeline.from_engine(engines["fp16"], backend="onnxruntime") as pipe:
        result = pipe(_image())
    assert result.precision == "fp16" and result.fallback is None and result.ran_on == "onnxruntime-cpu fp16"


def test_fp32_engine_runs_its_source_onnx(engines):
    with load_engine(engines["fp32"], backend="onnxruntime") as engine:
        assert engine.path.name == "tiny.onnx" and engine.precision == "fp32"


def test_a_changed_network_onnx_is_refused_by_sha256(engines, tmp_path):
    engine = engines["fp16"]
    network = network_onnx(engine).path
    original = network.read_bytes()
    model = onnx.load(str(network))
    model.producer_name = "edited after the build"
    onnx.save(model, str(network))
    try:
        with pytest.raises(InputError, match=r"tiny\.fp16\.onnx has sha256 .* built from sha256 .*Hint: rebuild the engine"):
            Pipeline.from_engine(engine)
    finally:
        network.write_bytes(original)


def test_a_missing_network_onnx_names_the_file_and_the_rebuild(engines, tmp_path):
    sidecar = EngineSidecar.load(sidecar_path_for(engines["int8"]))
    moved = _copy_engine(engines["int8"], tmp_path, network_onnx_path=str(tmp_path / "gone.int8.onnx"))
    with pytest.raises(InputError, match=r"parsed from .*gone\.int8\.onnx \(int8\), which is not there.*-o \S*tiny_int8\.engine --precision int8 .*--force"):
        load_engine(moved, backend="onnxruntime")
    assert sidecar.network_onnx_sha256


def test_an_older_sidecar_without_the_network_onnx_is_refused_not_run_in_fp32(engines, tmp_path, capsys, monkeypatch):
    """A sidecar JSON an older trtpipe wrote (no network_onnx_* keys at all), through the API and every CLI verb
    that runs it; the hint rebuilds this engine, in place, with the options it was built with."""
    old = tmp_path / "old" / engines["fp16"].name
    old.parent.mkdir()
    old.write_bytes(engines["fp16"].read_bytes())
    data = json.loads(sidecar_path_for(engines["fp16"]).read_text())
    for key in ("network_onnx_path", "network_onnx_sha256", "network_onnx_precision"):
        del data[key]
    del data["build_config"]["network_onnx_sha256"]
    sidecar_path_for(old).write_text(json.dumps(data))
    rebuild = rf"Hint: rebuild the engine as it was built: trtpipe build \S*tiny\.onnx -o {re.escape(str(old))} --precision fp16 --batch 1:2:4 --force"
    for backend in ("auto", "onnxruntime"):
        with pytest.raises(InputError, match=f"does not record the network ONNX.*older trtpipe.*{rebuild}"):
            Pipeline.from_engine(old, backend=backend)
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), _image())
    monkeypatch.chdir(tmp_path)  # bench's default report folder: nothing may be written there
    for argv in (["infer", str(old), str(image)], ["bench", str(old), "--backend", "onnxruntime", "--duration", "0.05s"],
                 ["bench", str(old), "--backend", "auto", "--duration", "0.05s"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "does not record the network ONNX" in err and "Traceback" not in err and f"-o {old} " in err
    assert main(["inspect", str(old)]) == 0  # describing it needs no network ONNX
    assert not (tmp_path / "reports").exists()


def test_two_int8_engines_from_one_onnx_keep_their_own_network_onnx(engines, tmp_path):
    """Two INT8 engines from one ONNX with different options: each engine's fallback runs the model it was built
    from (<engine stem>.int8.onnx), so building the second never breaks the first."""
    from trtpipe.builder.builder import build_engine

    folder = engines["fp32"].parent
    calib = str(folder / "calib")
    first_config = BuildConfig(flavor="tensorrt_rtx", precision="int8", batch=BatchRange(1, 2, 4), calib_images=calib,
                               fidelity_target="none")
    first = build_engine(folder / "tiny.onnx", tmp_path / "first.engine", first_config)
    second = build_engine(folder / "tiny.onnx", tmp_path / "second.engine",
                          dataclasses.replace(first_config, bias_correction=False, calib_method="max"))
    assert first.sidecar.network_onnx_path.endswith("first.int8.onnx")
    assert second.sidecar.network_onnx_path.endswith("second.int8.onnx")
    for engine_path in (first.engine_path, second.engine_path):
        with load_engine(engine_path) as engine:
            assert engine.precision == "int8"


def test_a_network_onnx_changed_after_the_build_is_refused_with_the_rebuild_command(engines, tmp_path):
    """The fallback never runs another model than the engine's: a network ONNX rewritten after the build is refused,
    and the hint rebuilds the engine as it was built."""
    from trtpipe.builder.builder import build_engine

    folder = engines["fp32"].parent
    config = BuildConfig(flavor="tensorrt_rtx", precision="int8", batch=BatchRange(1, 2, 4),
                         calib_images=str(folder / "calib"), fidelity_target="none")
    built = build_engine(folder / "tiny.onnx", tmp_path / "first.engine", config)
    network = Path(built.sidecar.network_onnx_path)
    import onnx

    model = onnx.load(str(network))
    model.doc_string = "edited after the build"
    onnx.save(model, str(network))
    with pytest.raises(InputError, match=r"changed after the build.*Hint: rebuild the engine as it was built: "
                                         r".*-o \S*first\.engine"):
        load_engine(built.engine_path)


def test_rebuild_hint_of_an_int8_engine_names_its_calibration_options(engines, tmp_path):
    from trtpipe.runtime.compat import rebuild_command

    sidecar = EngineSidecar.load(sidecar_path_for(engines["int8"]))
    changed = dataclasses.replace(sidecar, build_config={**sidecar.build_config, "auto_keep": 2, "bias_correction": False})
    command = rebuild_command(changed, "e/x.engine")
    assert re.fullmatch(r"trtpipe build \S*tiny\.onnx -o e/x\.engine --precision int8 --batch 1:2:4 --images DIR "
                        r"--calib-method \w+ --auto-keep 2 --no-bias-correction --fidelity-target none --force", command), command
    assert "--compute-capability SM86" in rebuild_command(changed, "e/x.engine", compute_capability="SM86")


def test_infer_into_a_closed_pipe_ends_quietly(engines, tmp_path):
    """`trtpipe infer ... | head -1`: the reader goes away; that is no traceback."""
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), _image())
    done = subprocess.run(f"{sys.executable} -m trtpipe.cli.main infer {engines['fp16']} {' '.join([str(image)] * 40)} | head -1",
                          shell=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.startswith("running ") and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_classic_flag_build_runs_fp32_and_says_so(engines, tmp_path, caplog):
    """TensorRT 10's BuilderFlag.FP16 puts the precision in the builder, not the ONNX: ORT can only run FP32."""
    source = EngineSidecar.load(sidecar_path_for(engines["fp32"]))
    classic = _copy_engine(engines["fp32"], tmp_path, precision="fp16", precision_realised="BuilderFlag.FP16",
                           network_onnx_path=source.network_onnx_path)
    with caplog.at_level(logging.WARNING, logger="trtpipe.runtime"), Pipeline.from_engine(classic) as pipe:
        assert pipe(_image()).precision == "fp32"
    assert "is fp16 through BuilderFlag.FP16; ONNX Runtime runs its fp32 network ONNX" in caplog.text


def _fp16_overflow_chain(path, gain=300.0):
    """An FP16 ONNX with FP32 I/O: x (N x 4) -> Cast FP16 -> MatMul(all ``gain``) -> MatMul(all 0.001) -> Cast FP32.
    For x = 100 the first product is 4 * 100 * 300 = 120000, past FP16's largest value 65504: inf in FP16."""
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.full((4, 4), gain, np.float16), "W1"),
               numpy_helper.from_array(np.full((4, 4), 0.001, np.float16), "W2")]
    nodes = [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16), helper.make_node("MatMul", ["xh", "W1"], ["a"]),
             helper.make_node("MatMul", ["a", "W2"], ["b"]), helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "fp16_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_fp16_on_onnxruntime_runs_with_fp16_storage_so_overflow_shows(tmp_path):
    """A plain CPU session computes this FP16 chain in FP32 (480, finite); TensorRT's FP16 kernels store 120000 as inf."""
    path = _fp16_overflow_chain(tmp_path / "chain.fp16.onnx")
    x = np.full((2, 4), 100.0, np.float32)
    with OnnxRuntimeEngine(path, providers=["CPUExecutionProvider"]) as engine:
        assert engine.fp16_storage is True and engine.precision == "fp16"
        assert [o.name for o in engine.outputs] == ["y"]  # the storage routing's extra outputs stay inside
        outputs = engine.infer({"x": x})
    assert list(outputs) == ["y"] and np.isinf(outputs["y"]).all()
    with OnnxRuntimeEngine(path, providers=["CPUExecutionProvider"], fp16_storage=False) as plain:
        assert plain.fp16_storage is False
        assert np.allclose(plain.infer({"x": x})["y"], 480.0, rtol=1e-2)  # what FP16 storage exists to prevent
    with OnnxRuntimeEngine(_fp16_overflow_chain(tmp_path / "small.fp16.onnx", gain=1.0), providers=["CPUExecutionProvider"]) as engine:
        small = engine.infer({"x": np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)})["y"]
    assert np.allclose(small, 0.04, rtol=1e-2)  # within FP16's range: the expected value


def test_an_fp16_engine_falls_back_with_fp16_storage(engines, tiny_classifier_onnx):
    with Pipeline.from_engine(engines["fp16"]) as pipe:
        assert pipe.engine.fp16_storage is True and "FP16 storage" not in pipe.describe()
    with Pipeline.from_engine(engines["fp16"], fp16_storage=False) as pipe:
        assert pipe.engine.fp16_storage is False and "fp16_storage=False" in pipe.describe()
    with OnnxRuntimeEngine(tiny_classifier_onnx) as fp32, load_engine(engines["int8"]) as int8:
        assert fp32.fp16_storage is None and int8.fp16_storage is None  # nothing to store for FP32 and Q/DQ graphs


class _CountingSession:
    """Stands in for an InferenceSession: counts the calls inside ``run`` at once (each sleeps, releasing the GIL)."""

    def __init__(self, session):
        self.session, self.inside, self.most, self.lock = session, 0, 0, threading.Lock()

    def run(self, names, feeds):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.05)
        with self.lock:
            self.inside -= 1
        return self.session.run(names, feeds)


@pytest.mark.parametrize("contexts", [1, 2])
def test_onnxruntime_contexts_are_calls_at_once(tiny_classifier_onnx, contexts):
    with OnnxRuntimeEngine(tiny_classifier_onnx, contexts=contexts) as engine:
        assert engine.num_contexts == contexts
        counting = engine._session = _CountingSession(engine._session)
        feeds = {engine.inputs[0].name: np.zeros((1, *engine.inputs[0].shape[1:]), np.float32)}
        threads = [threading.Thread(target=engine.infer, args=(feeds,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert counting.most == contexts


def test_contexts_reach_the_fallback_and_bad_values_are_refused(engines, tiny_classifier_onnx):
    with Pipeline.from_engine(engines["fp16"], contexts=2) as pipe:  # TensorRT's option: the fallback honours it
        assert pipe.engine.num_contexts == 2 and pipe.fallback
    with pytest.raises(ConfigError, match=r"contexts=0, expected 1 or more.*Hint: use contexts=1"):
        OnnxRuntimeEngine(tiny_classifier_onnx, contexts=0)


def test_tensorrt_without_a_gpu_names_the_python_argument_and_the_flag_in_the_cli(engines, capsys):
    with pytest.raises(ConfigError, match=r'cannot run it: no usable NVIDIA GPU.*Hint: .*backend="auto" / backend="onnxruntime"'):
        Pipeline.from_engine(engines["fp16"], backend="tensorrt")
    image = engines["fp16"].with_name("x.png")  # an image that exists: the sources are opened before the engine
    cv2.imwrite(str(image), _image())
    assert main(["infer", str(engines["fp16"]), "--backend", "tensorrt", str(image)]) == 2
    err = capsys.readouterr().err
    assert "--backend auto / --backend onnxruntime" in err and 'backend="' not in err


def test_unknown_backend_lists_auto(engines):
    with pytest.raises(ConfigError, match=r"backend 'gpu' is unknown, expected one of auto, tensorrt, onnxruntime"):
        Pipeline.from_engine(engines["fp16"], backend="gpu")
    with pytest.raises(ConfigError, match="is an ONNX model; the tensorrt backend runs built engines"):
        choose_backend("model.onnx", "tensorrt")
    assert choose_backend("model.onnx", "auto").name == "onnxruntime"


def test_unknown_keyword_arguments_are_a_type_error_listing_the_valid_ones(engines, tiny_classifier_onnx):
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) cuda_grpah \(did you mean cuda_graph\?\); valid: .*providers.*topk.*warmup"):
        Pipeline.from_engine(engines["fp16"], cuda_grpah=True)
    with pytest.raises(TypeError, match=r"score_treshold \(did you mean score_threshold\?\)"):
        Pipeline(OnnxRuntimeEngine(tiny_classifier_onnx), tiny_spec(), score_treshold=0.5)


def test_options_of_the_other_backend_do_not_stop_a_fallback(engines):
    with Pipeline.from_engine(engines["fp16"], cuda_graph=True, threads=1, topk=2) as pipe:
        assert len(pipe(_image()).indices) == 2 and pipe.fallback


def test_from_onnx_names_the_missing_onnx(tmp_path, engines):
    with pytest.raises(InputError, match=r"ONNX model .*missing\.onnx: no such file. Hint: check the path"):
        Pipeline.from_onnx(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match=r"is a TensorRT engine; .*Hint: use Pipeline.from_engine"):
        Pipeline.from_onnx(engines["fp16"])
    with pytest.raises(InputError, match=r"m\.onnx is an ONNX model; .*Hint: use Pipeline.from_onnx\('m.onnx'\)"):
        Pipeline.from_engine("m.onnx")


def test_auto_is_tensorrt_where_a_gpu_and_the_engines_tensorrt_are(sim_engine, simulated_machine):
    assert choose_backend(sim_engine, "auto") == choose_backend(sim_engine, "tensorrt")
    with Pipeline.from_engine(sim_engine) as pipe:
        result = pipe(_image())
    assert result.backend.endswith("-simulated") and result.fallback is None and result.precision == "fp32"


def test_auto_falls_back_when_the_engines_tensorrt_is_not_installed(sim_engine, sim_flavor):
    """A GPU (simulated) is here, but no TensorRT at all: "auto" runs ONNX Runtime and says why."""
    from trtpipe.flavors import using_flavors

    with using_flavors():
        choice = choose_backend(sim_engine, "auto")
        with pytest.raises(ConfigError, match=f"needs TensorRT on an NVIDIA GPU.*needs .*{sim_flavor.version}, and this machine has no TensorRT"):
            choose_backend(sim_engine, "tensorrt")
    assert choice.name == "onnxruntime" and f"{sim_flavor.version}, and this machine has no TensorRT" in choice.fallback


def test_infer_cli_one_image_is_timed_and_names_precision_and_fallback(engines, tmp_path, capsys):
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), _image())
    assert main(["infer", str(engines["int8"]), str(image), "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "no timed calls" not in out and "no calls timed" not in out
    assert "onnxruntime-cpu int8 (CPU fallback)" in out and "its int8 network ONNX" in out
    latency = next(line for line in out.splitlines() if line.startswith("latency"))
    assert float(latency.split()[1]) > 0 and out.splitlines()[-1].startswith("infer: 1 result, 0 errors")  # timed
    record = json.loads((tmp_path / "out.json").read_text())["results"][0]
    assert record["precision"] == "int8" and "no usable NVIDIA GPU" in record["fallback"]


def test_the_cli_says_cpu_fallback_and_its_reason_once(engines, tmp_path, capsys, caplog):
    """infer's "running" line and bench --pipeline's note say it; the loader's warning said it again on stderr."""
    image = tmp_path / "photos" / "one.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), _image())

    def said(argv) -> int:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trtpipe"):
            assert main(argv) == 0
        shown = capsys.readouterr()
        return sum(text.count("no usable NVIDIA GPU") for text in (shown.out, shown.err, caplog.text))

    assert said(["infer", str(engines["fp16"]), str(image)]) == 1
    assert said(["bench", str(engines["fp16"]), "--pipeline", "--images", str(image.parent), "--json",
                 str(tmp_path / "p.json")]) == 1
    assert "apply to the other backend" not in caplog.text  # bench --pipeline passes --cuda-graph only when given
    with caplog.at_level(logging.WARNING, logger="trtpipe"), Pipeline.from_engine(engines["fp16"]):
        pass  # the library's callers still get the warning
    assert "(CPU fallback)" in caplog.text and "no usable NVIDIA GPU" in caplog.text


def test_bench_onnxruntime_on_an_int8_engine_runs_the_qdq_onnx(engines, tmp_path):
    from trtpipe.bench.report import BenchReport

    out = tmp_path / "r.json"
    assert main(["bench", str(engines["int8"]), "--backend", "onnxruntime", "--duration", "0.05s", "--warmup", "10ms",
                 "--no-end-to-end", "--threads", "1", "--json", str(out)]) == 0
    report = BenchReport.load(out)
    assert report.model["precision"] == "int8" and report.model["file"].endswith("tiny.int8.onnx")
    assert "fp16_storage" not in report.backend


def test_bench_of_an_fp16_fallback_says_it_ran_with_fp16_storage(engines, tmp_path):
    from trtpipe.bench.report import BenchReport

    out = tmp_path / "r.json"
    assert main(["bench", str(engines["fp16"]), "--backend", "auto", "--duration", "0.05s", "--warmup", "10ms",
                 "--no-end-to-end", "--threads", "1", "--infStreams", "2", "--json", str(out)]) == 0
    report = BenchReport.load(out)
    assert report.model["precision"] == "fp16" and report.backend["fp16_storage"] is True and report.backend["fallback"]
    assert report.backend["contexts"] == 2 and any("stored as FP16 between ops" in note for note in report.notes)


def _copy_engine(engine, folder, **sidecar_changes):
    """A copy of ``engine`` in ``folder`` whose sidecar has ``sidecar_changes``."""
    copy = folder / engine.name
    copy.write_bytes(engine.read_bytes())
    sidecar = EngineSidecar.load(sidecar_path_for(engine))
    dataclasses.replace(sidecar, engine_file=copy.name, **sidecar_changes).save(sidecar_path_for(copy))
    return copy
