"""triton-export/serve --labels: the pipeline model's class names from a bundled set or a file, checked before writing."""

from __future__ import annotations

from trtpipe.cli.main import main
from trtpipe.spec import PreprocessSpec, preprocess_path_for


def _tiny(tiny_onnx):
    onnx_path = tiny_onnx("tiny.onnx")
    PreprocessSpec(model="tiny", height=32, width=32, labels="imagenet1k").save(preprocess_path_for(onnx_path))
    return onnx_path


def test_labels_override_the_specs_set(tiny_onnx, tmp_path, capsys):
    onnx_path = _tiny(tiny_onnx)
    assert main(["triton-export", str(onnx_path), "--repo", str(tmp_path / "repo"), "--labels", "voc21"]) == 0
    labels = (tmp_path / "repo" / "tiny_pipeline" / "1" / "labels.txt").read_text().splitlines()
    assert labels[:2] == ["background", "aeroplane"] and len(labels) == 21
    names = tmp_path / "mine.txt"
    names.write_text("# two classes\nhelmet\nvest\n")
    assert main(["triton-export", str(onnx_path), "--repo", str(tmp_path / "repo2"), "--labels", str(names)]) == 0
    assert (tmp_path / "repo2" / "tiny_pipeline" / "1" / "labels.txt").read_text().splitlines() == ["helmet", "vest"]


def test_an_unknown_label_set_writes_nothing(tiny_onnx, tmp_path, capsys):
    onnx_path = _tiny(tiny_onnx)
    assert main(["triton-export", str(onnx_path), "--repo", str(tmp_path / "repo"), "--labels", "coco81"]) == 2
    assert "label set 'coco81' is neither a bundled set" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_a_grayscale_model_without_a_spec_exports_its_derived_spec_and_metadata_names(tmp_path, capsys):
    import json

    from tests.intake_models import channels_classifier

    onnx_path = channels_classifier(tmp_path / "gray.onnx", 1, size=(32, 32), classes=3,
                                    metadata={"character": "ok\nscratch\ndent"})
    assert main(["triton-export", str(onnx_path), "--repo", str(tmp_path / "repo"), "--mean", "0.5", "--std", "0.5"]) == 0
    version = tmp_path / "repo" / "gray_pipeline" / "1"
    served = json.loads((version / "preprocess.json").read_text())
    assert (served["channel_order"], served["mean"], served["std"], served["labels"]) == ("GRAY", [0.5], [0.5], "labels.txt")
    assert (version / "labels.txt").read_text().splitlines() == ["ok", "scratch", "dent"]
    assert not (tmp_path / "gray.preprocess.json").exists()  # nothing written beside the user's model
