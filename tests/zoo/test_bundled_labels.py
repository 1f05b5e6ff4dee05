"""Bundled label sets load without torch, name classes in index order, and match the libraries they came from."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trtpipe.errors import InputError
from trtpipe.labels import load_labels


def test_imagenet1k_has_1000_names_in_class_order():
    labels = load_labels("imagenet1k")
    assert len(labels) == 1000 == len(set(labels))
    assert labels[0] == "tench" and labels[285] == "Egyptian cat" and labels[999] == "toilet tissue"
    labels.append("mutated")
    assert len(load_labels("imagenet1k")) == 1000, "callers get a copy"


def test_imagenet1k_matches_torchvision_categories():
    torchvision = pytest.importorskip("torchvision")
    categories = torchvision.models.get_weight("MobileNet_V2_Weights.IMAGENET1K_V2").meta["categories"]
    assert load_labels("imagenet1k") == categories


def test_text_file_path(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("cat\n\ndog\n")
    assert load_labels(str(path)) == ["cat", "dog"]


def test_unknown_set_is_input_error_with_hint():
    with pytest.raises(InputError, match="imagenet21k.*Hint: use one of imagenet1k, coco80"):
        load_labels("imagenet21k")


@pytest.mark.parametrize(
    "name, count, known",
    [
        ("coco80", 80, {0: "person", 2: "car", 79: "toothbrush"}),
        ("coco91", 91, {0: "background", 1: "person", 12: "N/A", 90: "toothbrush"}),
        ("ade20k150", 150, {0: "wall", 2: "sky", 12: "person", 149: "flag"}),
        ("cityscapes19", 19, {0: "road", 11: "person", 18: "bicycle"}),
        ("voc21", 21, {0: "background", 15: "person", 20: "tvmonitor"}),
    ],
)
def test_dataset_label_sets(name, count, known):
    labels = load_labels(name)
    assert len(labels) == count and all(labels[i] == n for i, n in known.items())


def test_label_sets_match_their_sources():
    """Each file's header names its source; the lists are checked against the installed libraries."""
    yaml = pytest.importorskip("yaml")
    ultralytics = pytest.importorskip("ultralytics")
    from pathlib import Path

    from torchvision.datasets import Cityscapes
    from torchvision.models import get_weight

    datasets = Path(ultralytics.__file__).parent / "cfg" / "datasets"
    names = lambda file: list(yaml.safe_load((datasets / file).read_text())["names"].values())  # noqa: E731
    assert load_labels("coco80") == names("coco.yaml")
    assert load_labels("ade20k150") == names("ade20k.yaml")
    assert load_labels("cityscapes19") == [c.name for c in sorted(Cityscapes.classes, key=lambda c: c.train_id) if 0 <= c.train_id < 255]
    torchvision_coco = get_weight("FasterRCNN_ResNet50_FPN_Weights.COCO_V1").meta["categories"]
    assert load_labels("coco91") == ["background", *torchvision_coco[1:]]
    assert load_labels("voc21") == ["background", *get_weight("FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1").meta["categories"][1:]]


def test_names_lists_and_files_relative_to_a_folder(tmp_path):
    (tmp_path / "classes.names").write_text("# my detector\nhelmet\nvest\n")
    assert load_labels("classes.names", relative_to=tmp_path) == ["helmet", "vest"]
    assert load_labels(["a", "b"]) == ["a", "b"]
    with pytest.raises(InputError, match="not a non-empty list of class names"):
        load_labels([1, 2])
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(InputError, match="holds no class names"):
        load_labels(str(tmp_path / "empty.txt"))


def test_does_not_import_torch():
    code = "import sys; from trtpipe.labels import load_labels; load_labels('imagenet1k'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
