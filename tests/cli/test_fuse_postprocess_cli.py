"""build --fuse-postprocess end to end: a real TensorRT-RTX engine whose results, through Pipeline, equal the host head's."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.intake_models import tiny_detector_model, tiny_segmenter_model
from trtpipe.cli.main import main
from trtpipe.pipeline.pipeline import Pipeline
from trtpipe.runtime.simulation import make_tiny_classifier, tiny_spec

pytest.importorskip("tensorrt_rtx")


def photos(count=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


def build(capsys, onnx_path, engine, *flags) -> str:
    code = main(["build", str(onnx_path), "-o", str(engine), "--batch", "1:2:4", *flags])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.mark.parametrize("kind", ["detection", "classification", "segmentation"])
def test_a_fused_postprocess_engine_gives_the_host_heads_results(tmp_path, capsys, kind):
    if kind == "detection":
        model = tiny_detector_model(tmp_path / "m.onnx")
    elif kind == "segmentation":
        model = tiny_segmenter_model(tmp_path / "m.onnx")
    else:
        model = make_tiny_classifier(tmp_path / "m.onnx")
        tiny_spec().save(tmp_path / "m.preprocess.json")
    build(capsys, model, tmp_path / "host.engine")
    out = build(capsys, model, tmp_path / "fused.engine", "--fuse-postprocess", "--topk", "3", "--max-det", "20")
    assert "post-processing fused into the network" in out
    sidecar = json.loads((tmp_path / "fused.engine.json").read_text())
    assert sidecar["build_config"]["fuse_postprocess"] == "conf=0.25,iou=0.45,max_det=20,topk=3"
    assert sidecar["preprocess"]["fused_postprocess"].startswith(kind)
    if kind == "detection":  # TensorRT-RTX has no NonMaxSuppression runner: the loop NMS was built
        assert "nms=loop" in sidecar["preprocess"]["fused_postprocess"]
        assert [o["name"] for o in sidecar["outputs"]] == ["num_detections", "boxes", "scores", "classes"]
    assert (tmp_path / "fused.postprocess.onnx").is_file()
    images = photos()
    with Pipeline.from_engine(tmp_path / "host.engine", topk=3) as host, Pipeline.from_engine(tmp_path / "fused.engine", topk=3) as fused:
        for a, b in zip(host(images), fused(images)):
            assert type(a) is type(b)
            if kind == "detection":
                np.testing.assert_allclose(b.boxes, a.boxes, rtol=1e-4, atol=1e-3)
                assert b.labels == a.labels and np.allclose(b.scores, a.scores)
            elif kind == "classification":
                assert b.indices == a.indices and np.allclose(b.scores, a.scores, rtol=1e-5)
            else:
                np.testing.assert_array_equal(b.mask, a.mask)
        with fused.stream(images, batch_size=2) as stream:  # the stream runs the same fused head
            assert [item.ok for item in stream] == [True] * 3


def test_infer_on_a_fused_detector_prints_its_boxes(tmp_path, capsys):
    model = tiny_detector_model(tmp_path / "det.onnx")
    build(capsys, model, tmp_path / "det.engine", "--fuse-postprocess")
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), photos(1)[0])
    assert main(["infer", str(tmp_path / "det.engine"), str(folder)]) == 0
    out = capsys.readouterr().out
    assert " 0 " in out and "0.900" in out  # anchor 0's class 0 at 0.9, decoded on the engine's side


def test_fuse_postprocess_without_a_spec_is_refused_before_any_work(tmp_path, capsys):
    model = tiny_detector_model(tmp_path / "bare.onnx")
    (tmp_path / "bare.preprocess.json").unlink()
    code = main(["build", str(model), "-o", str(tmp_path / "bare.engine"), "--fuse-postprocess"])
    err = capsys.readouterr().err
    assert code == 2 and "--fuse-postprocess needs the model's task" in err and "Hint: say it: --task" in err
    assert not list(tmp_path.glob("bare.engine*")) and not list(tmp_path.glob("*.postprocess.onnx"))


def test_export_fuse_postprocess_writes_a_topk_onnx_that_builds(tmp_path, capsys):
    onnx_path = tmp_path / "mnv2.onnx"
    assert main(["export", "mobilenetv2", "-o", str(onnx_path), "--weights", "random", "--fuse-postprocess",
                 "--topk", "3"]) == 0
    spec = json.loads((tmp_path / "mnv2.preprocess.json").read_text())
    assert spec["fused_postprocess"] == "classification:classes=1000,topk=3" and spec["head"] == "fused_classification"
    out = build(capsys, onnx_path, tmp_path / "mnv2.engine")
    assert "built" in out
    with Pipeline.from_engine(tmp_path / "mnv2.engine", topk=3) as pipe:
        result = pipe(photos(1)[0])
    assert len(result.indices) == 3 and result.scores[0] >= result.scores[1] >= result.scores[2]


def test_a_nonmaxsuppression_head_is_refused_by_tensorrt_rtx_before_any_work(tmp_path, capsys):
    import onnx

    from trtpipe.onnx.fuse_postprocess import fuse_postprocess
    from trtpipe.spec import PreprocessSpec, preprocess_path_for

    model = tiny_detector_model(tmp_path / "d.onnx")
    fused = fuse_postprocess(onnx.load(str(model)), PreprocessSpec.load(preprocess_path_for(model)), nms="onnx")
    onnx.save(fused.model, str(tmp_path / "d_nms.onnx"))
    fused.spec.save(tmp_path / "d_nms.preprocess.json")
    code = main(["build", str(tmp_path / "d_nms.onnx"), "-o", str(tmp_path / "d_nms.engine")])
    err = capsys.readouterr().err
    assert code == 2 and "no runner for" in err and "Hint: export it with --fuse-postprocess --nms loop" in err
    assert not (tmp_path / "d_nms.engine").exists()


def test_an_engine_named_like_its_onnx_leaves_the_users_spec_as_it_was(tmp_path, capsys):
    model = tiny_detector_model(tmp_path / "det.onnx")
    before = (tmp_path / "det.preprocess.json").read_bytes()
    build(capsys, model, tmp_path / "det.engine", "--fuse-postprocess")  # det.postprocess.onnx: its spec would be det's
    assert (tmp_path / "det.preprocess.json").read_bytes() == before
    with Pipeline.from_engine(tmp_path / "det.engine") as pipe:  # the sidecar carries the fused spec
        assert pipe.spec.fused_postprocess is not None and len(pipe(photos(1)[0])) == 2  # both of its boxes


def test_fusing_an_onnx_that_already_ends_in_its_head_is_refused_before_any_work(tmp_path, capsys):
    model = tiny_detector_model(tmp_path / "det.onnx")
    build(capsys, model, tmp_path / "first.engine", "--fuse-postprocess")
    fused_onnx = tmp_path / "first.postprocess.onnx"  # with first.preprocess.json (fused_postprocess set) beside it
    code = main(["build", str(fused_onnx), "-o", str(tmp_path / "again.engine"), "--fuse-postprocess"])
    err = capsys.readouterr().err
    assert code == 2 and "already ends in its post-processing" in err and "Hint: build it without" in err
    assert not list(tmp_path.glob("again*"))
