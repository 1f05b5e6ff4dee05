"""Bundled label sets load without torch and name ImageNet classes in index order."""

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
    with pytest.raises(InputError, match="imagenet21k.*Hint: use one of imagenet1k"):
        load_labels("imagenet21k")


def test_does_not_import_torch():
    code = "import sys; from trtpipe.labels import load_labels; load_labels('imagenet1k'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
