"""Calibration image folders: recursive, deterministic, grayscale/alpha handled, unreadable files skipped."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.errors import InputError
from trtpipe.quant.images import find_images, load_images
from trtpipe.spec import PreprocessSpec

SPEC = PreprocessSpec(model="tiny", height=32, width=32)


def test_found_recursively_in_a_seeded_order(image_dir):
    first, again = find_images(image_dir, seed=0), find_images(image_dir, seed=0)
    assert first == again and len(first) == 24
    assert {p.name for p in first} >= {"gray.png", "alpha.png"}
    assert find_images(image_dir, seed=1) != first
    assert len(find_images(image_dir, max_images=5)) == 5


def test_loaded_like_the_runtime_and_unreadable_files_listed(image_dir, caplog):
    (image_dir / "broken.png").write_bytes(b"\x89PNG broken")
    images = load_images(image_dir, SPEC, progress=False)
    assert len(images) == 24 and images.resized.shape == (24, 32, 32, 3)
    assert [p.name for p, _ in images.skipped] == ["broken.png"]
    assert "broken.png" in caplog.text
    batch = next(images.batches(10))
    assert batch.shape == (10, 3, 32, 32) and batch.dtype == np.float32


def test_split_holds_back_a_spread_subset(image_dir):
    images = load_images(image_dir, SPEC, progress=False)
    calibration, held = images.split(0.25)
    assert len(held) == 6 and len(calibration) == 18 and not set(held) & set(calibration)


def test_hash_changes_with_content(image_dir):
    before = load_images(image_dir, SPEC, progress=False).sha256()
    (image_dir / "img_005.jpg").write_bytes((image_dir / "img_006.jpg").read_bytes())
    assert load_images(image_dir, SPEC, progress=False).sha256() != before


@pytest.mark.parametrize("make", ["missing", "file", "empty", "only_text"])
def test_bad_folders_name_the_problem(tmp_path, make):
    folder = tmp_path / "calib"
    if make == "file":
        folder.write_text("x")
    elif make in ("empty", "only_text"):
        folder.mkdir()
        if make == "only_text":
            (folder / "notes.txt").write_text("no images")
    with pytest.raises(InputError, match="Hint:"):
        load_images(folder, SPEC, progress=False)


def test_no_readable_image_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"junk")
    with pytest.raises(InputError, match="0 readable images"):
        load_images(tmp_path, SPEC, progress=False)
