"""The model repository: config.pbtxt from an engine sidecar and from an ONNX, atomic writes, the CLI verb."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.intake_models import batch_statistic_model, nonzero_output_model
from trtpipe.cli.main import main
from trtpipe.errors import ConfigError, InputError
from trtpipe.serve.triton_export import export_repository
from trtpipe.spec import BatchRange, BuildConfig, PreprocessSpec, preprocess_path_for


def parse_config(path):
    """config.pbtxt parsed by Triton's own ModelConfig message: proof that Triton can read it."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[grpc]")
    from google.protobuf import json_format, text_format

    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@pytest.fixture
def tiny_with_spec(tiny_onnx):
    onnx_path = tiny_onnx("tiny.onnx")
    PreprocessSpec(model="tiny", height=32, width=32, labels="imagenet1k", weights="random").save(preprocess_path_for(onnx_path))
    return onnx_path


def test_onnx_repository(tiny_with_spec, tmp_path):
    result = export_repository(tiny_with_spec, tmp_path / "repo", queue_delay_us=500, instances=2)
    repo = tmp_path / "repo"

    assert sorted(p.name for p in repo.iterdir()) == ["tiny", "tiny_pipeline"]
    assert (repo / "tiny" / "1" / "model.onnx").read_bytes() == tiny_with_spec.read_bytes()
    network = parse_config(repo / "tiny" / "config.pbtxt")
    assert network["platform"] == "onnxruntime_onnx" and network["max_batch_size"] == 8
    assert network["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": ["3", "32", "32"]}]
    assert network["output"] == [{"name": "output", "data_type": "TYPE_FP32", "dims": ["8", "32", "32"]}]
    assert network["dynamic_batching"] == {"preferred_batch_size": [8], "max_queue_delay_microseconds": "500"}
    assert network["instance_group"] == [{"count": 2}]  # KIND_AUTO is the enum default, left out of the dict
    assert "kind: KIND_AUTO" in (repo / "tiny" / "config.pbtxt").read_text()

    pipeline = parse_config(repo / "tiny_pipeline" / "config.pbtxt")
    assert pipeline["backend"] == "python" and pipeline["max_batch_size"] == 8
    assert pipeline["input"] == [{"name": "image", "data_type": "TYPE_UINT8", "dims": ["-1"], "allow_ragged_batch": True}]
    assert [(o["name"], o["data_type"]) for o in pipeline["output"]] == [
        ("class_ids", "TYPE_INT32"), ("scores", "TYPE_FP32"), ("labels", "TYPE_STRING")
    ]
    assert pipeline["parameters"]["network_model"] == {"string_value": "tiny"}
    version = repo / "tiny_pipeline" / "1"
    assert (version / "model.py").read_text().startswith('"""Triton Python-backend model')
    assert PreprocessSpec.load(version / "preprocess.json").labels == "labels.txt"
    assert (version / "labels.txt").read_text().splitlines()[285] == "Egyptian cat"
    settings = json.loads((version / "pipeline.json").read_text())
    assert settings == {"network_model": "tiny", "input": "input", "input_dtype": "float32", "outputs": ["output"],
                        "max_batch": 8, "fixed_batch": None, "default_topk": 5}
    assert "tiny + tiny_pipeline" in result.summary() and result.network_runtime == "onnxruntime_onnx"


def test_dynamic_batching_can_be_left_off(tiny_with_spec, tmp_path):
    export_repository(tiny_with_spec, tmp_path / "repo", dynamic_batching=False)
    for model in ("tiny", "tiny_pipeline"):
        config = parse_config(tmp_path / "repo" / model / "config.pbtxt")
        assert "dynamic_batching" not in config and config["max_batch_size"] == 8


def test_onnx_in_the_python_backend_is_labelled(tiny_with_spec, tmp_path):
    export_repository(tiny_with_spec, tmp_path / "repo", onnx_runner="python", max_batch=4)
    network = parse_config(tmp_path / "repo" / "tiny" / "config.pbtxt")
    assert network["backend"] == "python" and "platform" not in network and network["max_batch_size"] == 4
    assert network["parameters"]["trtpipe_runner"]["string_value"] == "ONNX Runtime inside Triton's Python backend"
    assert (tmp_path / "repo" / "tiny" / "1" / "model.py").is_file()


def test_engine_repository(tiny_with_spec, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")
    from trtpipe.builder.builder import build_engine

    engine = build_engine(tiny_with_spec, tmp_path / "tiny_fp32.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 4, 16))).engine_path
    with pytest.raises(ConfigError, match="no stock Triton can load this engine"):
        export_repository(engine, tmp_path / "repo", max_batch=8)
    result = export_repository(engine, tmp_path / "repo", max_batch=8, force=True)

    network = parse_config(tmp_path / "repo" / "tiny_fp32" / "config.pbtxt")
    assert network["platform"] == "tensorrt_plan" and network["max_batch_size"] == 8
    assert network["input"][0]["dims"] == ["3", "32", "32"] and network["output"][0]["dims"] == ["8", "32", "32"]
    assert network["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert network["instance_group"] == [{"count": 1, "kind": "KIND_GPU"}]
    assert (tmp_path / "repo" / "tiny_fp32" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert any("TensorRT-RTX runtime" in note for note in result.notes)
    with pytest.raises(ConfigError, match="exceeds the engine's profile max batch 16.*Hint"):
        export_repository(engine, tmp_path / "repo", max_batch=32, force=True)
    assert parse_config(tmp_path / "repo" / "tiny_fp32" / "config.pbtxt")["max_batch_size"] == 8  # untouched


def test_a_failed_export_leaves_the_repository_as_it_was(tiny_with_spec, tmp_path, monkeypatch):
    import trtpipe.serve.triton_export as triton_export

    repo = tmp_path / "repo"
    export_repository(tiny_with_spec, repo, max_batch=4)
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C while the pipeline model is written

    monkeypatch.setattr(triton_export, "_write_pipeline_model", broken)
    with pytest.raises(KeyboardInterrupt):
        export_repository(tiny_with_spec, repo, max_batch=2)
    after = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_bad_inputs_are_clear(tiny_onnx, tiny_with_spec, tmp_path):
    with pytest.raises(InputError, match="no preprocess spec.*Hint: .*--no-pipeline"):
        export_repository(tiny_onnx("bare.onnx"), tmp_path / "repo")
    export_repository(tiny_onnx("bare.onnx"), tmp_path / "repo", pipeline=False)
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["bare"]
    with pytest.raises(ConfigError, match="model name 'a/b'"):
        export_repository(tiny_with_spec, tmp_path / "repo", name="a/b")
    with pytest.raises(ConfigError, match="fixed batch dimension"):
        export_repository(tiny_onnx("fixed.onnx", input_shape=(1, 3, 32, 32)), tmp_path / "repo", max_batch=4, pipeline=False)
    with pytest.raises(InputError, match="no sidecar"):
        (tmp_path / "x.engine").write_bytes(b"0")
        export_repository(tmp_path / "x.engine", tmp_path / "repo")


def test_fixed_batch_onnx_is_not_batched_by_triton(tiny_onnx, tmp_path):
    export_repository(tiny_onnx("fixed.onnx", input_shape=(1, 3, 32, 32)), tmp_path / "repo", pipeline=False)
    network = parse_config(tmp_path / "repo" / "fixed" / "config.pbtxt")
    assert network.get("max_batch_size", 0) == 0 and "dynamic_batching" not in network
    assert network["input"][0]["dims"] == ["1", "3", "32", "32"]


def test_cli_verb(tiny_with_spec, tmp_path, capsys):
    assert main(["triton-export", str(tiny_with_spec), "--repo", str(tmp_path / "repo"), "--name", "m", "--max-batch", "2"]) == 0
    assert "wrote Triton repository" in capsys.readouterr().out
    assert parse_config(tmp_path / "repo" / "m" / "config.pbtxt")["max_batch_size"] == 2
    assert main(["triton-export", str(tmp_path / "missing.onnx"), "--repo", str(tmp_path / "repo")]) == 2
    assert "no such file. Hint:" in capsys.readouterr().err


def test_an_output_without_a_batch_axis_gets_max_batch_size_0_and_full_shapes(tmp_path):
    """R7: NonZero's ``keep`` [4, num_kept] must not lose its 4 as if it were the batch."""
    onnx_path = nonzero_output_model(tmp_path / "nz.onnx")
    result = export_repository(onnx_path, tmp_path / "repo")
    network = parse_config(tmp_path / "repo" / "nz" / "config.pbtxt")
    assert network.get("max_batch_size", 0) == 0 and "dynamic_batching" not in network
    assert [(o["name"], o["dims"]) for o in network["output"]] == [("logits", ["-1", "10"]), ("keep", ["4", "-1"])]
    assert network["input"][0]["dims"] == ["-1", "3", "32", "32"]
    assert any(note.startswith("output(s) keep 4x? have no batch axis") for note in result.notes)
    settings = json.loads((tmp_path / "repo" / "nz_pipeline" / "1" / "pipeline.json").read_text())
    assert settings["outputs"] == ["logits"] and settings["batch_limit"] == 8 and settings["fixed_batch"] is None
    with pytest.raises(ConfigError, match=r"output\(s\) keep 4x\? have no batch axis.*--max-batch 4 was asked"):
        export_repository(onnx_path, tmp_path / "repo2", max_batch=4)
    assert not (tmp_path / "repo2").exists()


def test_an_output_named_by_another_axis_is_not_the_batch(tmp_path):
    import onnx

    path = nonzero_output_model(tmp_path / "nz.onnx")
    model = onnx.load(str(path))
    model.graph.output[1].CopyFrom(onnx.helper.make_tensor_value_info("keep", onnx.TensorProto.INT64, ["num_kept", 4]))
    onnx.save(model, str(path))  # keep declared [num_kept, 4], as NonZero transposed gives it
    export_repository(path, tmp_path / "repo", pipeline=False)
    assert parse_config(tmp_path / "repo" / "nz" / "config.pbtxt").get("max_batch_size", 0) == 0


def test_a_pipeline_needs_an_output_with_a_batch_axis(tmp_path):
    import onnx

    path = batch_statistic_model(tmp_path / "stat.onnx")
    model = onnx.load(str(path))
    del model.graph.output[0]  # only batch_mean [10] is left
    onnx.save(model, str(path))
    with pytest.raises(ConfigError, match=r"no output has a batch axis \(batch_mean 10\).*Hint: pass --no-pipeline"):
        export_repository(path, tmp_path / "repo")
    export_repository(path, tmp_path / "repo", pipeline=False)
    assert parse_config(tmp_path / "repo" / "stat" / "config.pbtxt")["output"][0]["dims"] == ["10"]


def test_outputs_without_a_declared_shape_get_the_inferred_one(tmp_path):
    from tests.intake_models import shapeless_output_model

    export_repository(shapeless_output_model(tmp_path / "s.onnx"), tmp_path / "repo", pipeline=False)
    network = parse_config(tmp_path / "repo" / "s" / "config.pbtxt")
    assert network["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": ["1", "8", "16", "16"]}]


def test_a_tensorrt_rtx_engine_is_refused_unless_forced(tmp_path, capsys):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")
    from trtpipe.builder.builder import build_engine

    onnx_path = batch_statistic_model(tmp_path / "stat.onnx")
    engine = build_engine(onnx_path, tmp_path / "stat.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 2, 4))).engine_path
    assert main(["triton-export", str(engine), "--repo", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert "is a TensorRT-RTX" in err and "no stock Triton can load this engine" in err
    assert f"Hint: serve the ONNX instead (trtpipe triton-export {onnx_path}" in err and "--force" in err
    assert not (tmp_path / "repo").exists()
    assert main(["triton-export", str(engine), "--repo", str(tmp_path / "repo"), "--force"]) == 0
    assert "note: FORCED: a TensorRT-RTX engine needs the TensorRT-RTX runtime" in capsys.readouterr().out
    network = parse_config(tmp_path / "repo" / "stat" / "config.pbtxt")
    # The engine's sidecar keeps batch_mean's fixed first axis: not the batch, so max_batch_size 0 here too.
    assert network.get("max_batch_size", 0) == 0
    assert [(o["name"], o["dims"]) for o in network["output"]] == [("logits", ["-1", "10"]), ("batch_mean", ["10"])]


# -- the pipeline model's pure helpers (no server needed) ------------------------------------------


def test_decode_image_and_topk_checks():
    import cv2

    from trtpipe.serve.pipeline_model import decode_image, read_topk

    gray = np.full((20, 30), 7, np.uint8)
    assert decode_image(cv2.imencode(".png", gray)[1]).shape == (20, 30, 3)  # grayscale becomes BGR
    with pytest.raises(InputError, match="empty"):
        decode_image(np.zeros(0, np.uint8))
    with pytest.raises(InputError, match="not an image.*Hint"):
        decode_image(np.frombuffer(b"GIF89a but not really", np.uint8))
    assert read_topk("", 5) == 5 and read_topk('{"topk": 3}', 5) == 3 and read_topk('{"topk": "2"}', 5) == 2
    for bad in ('{"topk": 0}', '{"topk": "x"}', '{"topk": 5000}', '{"topk": true}'):
        with pytest.raises(InputError, match="topk"):
            read_topk(bad, 5)


def test_result_arrays_per_task():
    from trtpipe.pipeline.heads.classification import Classification
    from trtpipe.pipeline.heads.detection import Detections
    from trtpipe.pipeline.heads.segmentation import Segmentation
    from trtpipe.serve.pipeline_model import result_arrays

    arrays = result_arrays("classification", Classification((285, 281), ("Egyptian cat", "tabby"), (0.7, 0.2)))
    assert arrays["class_ids"].tolist() == [[285, 281]] and arrays["class_ids"].dtype == np.int32
    assert arrays["labels"].tolist() == [[b"Egyptian cat", b"tabby"]] and arrays["scores"].dtype == np.float32
    boxes = np.array([[1, 2, 3, 4]], np.float32)
    arrays = result_arrays("detection", Detections(boxes, np.array([0.9], np.float32), np.array([3]), ("car",)))
    assert arrays["boxes"].shape == (1, 1, 4) and arrays["class_ids"].tolist() == [[3]] and arrays["labels"].tolist() == [[b"car"]]
    empty = result_arrays("detection", Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), ()))
    assert empty["boxes"].shape == (1, 0, 4) and empty["labels"].shape == (1, 0)
    mask = np.ones((5, 6), np.uint16)
    mask[:, :2] = 4
    arrays = result_arrays("segmentation", Segmentation(mask, 21, labels=tuple(f"c{i}" for i in range(21))))
    assert arrays["mask"].shape == (1, 5, 6) and arrays["mask"].dtype == np.uint16
    assert arrays["class_ids"].tolist() == [[1, 4]] and arrays["class_ids"].dtype == np.int32  # largest area first
    np.testing.assert_allclose(arrays["fractions"], [[20 / 30, 10 / 30]])
    assert arrays["labels"].tolist() == [[b"c1", b"c4"]]


def test_a_batch_only_output_is_reshaped_so_triton_loads_it(tmp_path):
    """R27's kind: an int64 ArgMax of shape [N] is dims [1] with reshape { shape: [] }; Triton's own message parses it."""
    from tests.quantized_models import plain_model

    export_repository(plain_model(tmp_path, "bo", batch_only_output=True, outputs_listed=3), tmp_path / "repo")
    network = parse_config(tmp_path / "repo" / "bo" / "config.pbtxt")
    outputs = {o["name"]: o for o in network["output"]}
    assert [o["name"] for o in network["output"]] == ["logits", "class_id"]  # logits listed three times: once here
    assert outputs["class_id"]["data_type"] == "TYPE_INT64" and outputs["class_id"]["dims"] == ["1"]
    assert "reshape" in outputs["class_id"] and not outputs["class_id"]["reshape"].get("shape")
    assert outputs["logits"]["dims"] == ["10"] and "reshape" not in outputs["logits"]


def test_a_plugin_node_is_refused_for_onnx_runtime_backends(tmp_path):
    """R26's kind: neither Triton's onnxruntime backend nor ONNX Runtime in the Python one has a TensorRT plugin op."""
    from tests.quantized_models import plain_model

    source = plain_model(tmp_path, "plug", plugin=True)
    for runner in ("onnxruntime", "python"):
        with pytest.raises(ConfigError) as caught:
            export_repository(source, tmp_path / "repo", onnx_runner=runner, pipeline=False)
        message = str(caught.value)
        assert "node 'nms' is BatchedNMSDynamic_TRT (domain 'TRT'), a TensorRT plugin op" in message
        assert "BatchedNMSDynamic_TRT plugin loaded" in message.split("Hint:")[1]
    assert not (tmp_path / "repo").exists()


def test_string_and_bool_outputs_get_triton_types(tmp_path):
    """A classifier exported with its post-processing: a bool mask [N, 10] and class names [N] (LabelEncoder)."""
    import onnx
    from onnx import TensorProto, helper

    from tests.quantized_models import plain_model

    path = plain_model(tmp_path, "post", batch_only_output=True)
    model = onnx.load(str(path))
    model.graph.node.extend([
        helper.make_node("LabelEncoder", ["class_id"], ["label"], name="names", domain="ai.onnx.ml",
                         keys_int64s=list(range(10)), values_strings=[f"class {i}" for i in range(10)]),
        helper.make_node("Greater", ["logits", "zero"], ["positive"], name="gt0")])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    model.graph.output.extend([helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]),
                               helper.make_tensor_value_info("positive", TensorProto.BOOL, ["N", 10])])
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 2))
    onnx.save(model, str(path))
    export_repository(path, tmp_path / "repo", pipeline=False)
    outputs = {o["name"]: o for o in parse_config(tmp_path / "repo" / "post" / "config.pbtxt")["output"]}
    assert outputs["label"]["data_type"] == "TYPE_STRING" and "reshape" in outputs["label"]
    assert outputs["positive"]["data_type"] == "TYPE_BOOL" and outputs["positive"]["dims"] == ["10"]
