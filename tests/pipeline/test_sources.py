"""Stream sources: folders, file lists, videos, cameras, arrays and generators, and what each refuses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trtpipe.errors import InputError
from trtpipe.pipeline.sources import open_source


def write_images(folder, count, size=(24, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"img{i:02d}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


def write_video(path, frames=7, size=(48, 64)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((*size, 3), i * 30, np.uint8))
    writer.release()
    return path


def test_folder_gives_its_images_sorted_and_skips_other_files(tmp_path):
    folder = write_images(tmp_path / "photos", 3)
    (folder / "notes.txt").write_text("not an image")
    with open_source(folder) as source:
        items = list(source)
        assert source.kind == "images" and source.description == f"folder {folder} (3 images)"
    assert [i.path.name for i in items] == ["img00.png", "img01.png", "img02.png"]
    assert all(i.image is None and i.error is None for i in items)  # decoding is the workers' job


def test_list_of_files_and_folders_is_read_in_order_and_checked_up_front(tmp_path):
    folder = write_images(tmp_path / "a", 2)
    single = write_images(tmp_path / "b", 1) / "img00.png"
    with open_source([str(single), folder]) as source:
        assert [i.name for i in source] == [str(single), str(folder / "img00.png"), str(folder / "img01.png")]
    with pytest.raises(InputError, match=r"missing\.jpg: no such file or folder.*Hint:"):
        open_source([str(single), str(tmp_path / "missing.jpg")])


def test_empty_folder_and_missing_path_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        open_source(tmp_path / "empty")
    with pytest.raises(InputError, match="no such file or folder"):
        open_source(tmp_path / "nothing")


def test_video_frames_are_decoded_in_order_with_their_read_time(tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=7)
    with open_source(video) as source:
        items = list(source)
        assert source.kind == "video"
    assert [i.name for i in items] == [f"{video} frame {n}" for n in range(7)]
    assert all(i.image.shape == (48, 64, 3) and i.read_ms >= 0 for i in items)
    brightness = [int(i.image.mean()) for i in items]
    assert brightness == sorted(brightness)  # the frames come in the order they were written


def test_max_frames_stops_early_and_releases_the_capture(tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=7)
    source = open_source(video, max_frames=3)
    assert len(list(source)) == 3
    assert source._captures == []  # released when the limit was reached
    with pytest.raises(InputError, match="max_frames is 0"):
        open_source(video, max_frames=0)


def test_a_camera_that_cannot_open_is_refused_when_opened_with_a_hint(capfd):
    with pytest.raises(InputError, match="OpenCV cannot open camera 97.*Hint: check that the camera"):
        open_source(97)  # no /dev/video97 here: refused before any work, not from the stream's reader
    assert "VIDEOIO" not in capfd.readouterr().err  # OpenCV's own warnings are not shown beside trtpipe's line


def test_a_video_in_a_list_that_cannot_be_opened_is_an_error_item_and_the_rest_goes_on(tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=2)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    folder = write_images(tmp_path / "photos", 1)
    items = list(open_source([broken, video, folder]))
    assert [i.name for i in items] == [str(broken), f"{video} frame 0", f"{video} frame 1", str(folder / "img00.png")]
    assert "OpenCV cannot open video" in str(items[0].error) and all(i.error is None for i in items[1:])


def test_generator_entries_that_are_not_images_become_error_items():
    def frames():
        yield np.zeros((4, 4, 3), np.uint8)
        yield {"not": "an image"}
        yield np.ones((4, 4, 3), np.uint8)

    items = list(open_source(frames()))
    assert [i.name for i in items] == ["image 0", "entry 1", "image 2"]
    assert items[1].error is not None and "is a dict" in str(items[1].error)
    assert items[0].image is not None and items[2].image is not None


def test_one_array_is_one_image():
    items = list(open_source(np.zeros((5, 5, 3), np.uint8)))
    assert len(items) == 1 and items[0].image.shape == (5, 5, 3)
