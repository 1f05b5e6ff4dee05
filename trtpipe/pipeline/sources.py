"""Where a stream's images come from: image files, folders, video files, cameras, or images in memory.

    open_source("photos/")            # the folder's images, sorted by name
    open_source(["a.jpg", "b/"])      # files and folders, in the order given
    open_source("clip.mp4")           # the video's frames (decoded by OpenCV)
    open_source(0)                    # camera 0, until the stream is closed (or max_frames)
    open_source(frames_generator())   # numpy BGR images and/or paths, as they come

A :class:`FrameSource` yields one :class:`SourceItem` per image, in order. Image files are only named here
(decoding them is the stream workers' job, so that several decode at once); video and camera frames are
decoded here, one after another, because a ``cv2.VideoCapture`` reads sequentially.

Part of the deployment path: numpy and OpenCV only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from trtpipe.errors import InputError, TrtpipeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")  # network video, read by OpenCV


@dataclass(frozen=True)
class SourceItem:
    """One image of a source, before decoding (a file) or already decoded (a video frame, an array).

    Exactly one of ``path``, ``image`` and ``error`` is set.
    """

    name: str  # how results name it: the path as given, "clip.mp4 frame 12", "camera 0 frame 3", "image 4"
    path: Path | None = None  # an image file, decoded by a stream worker
    image: np.ndarray | None = None  # a decoded frame or an array the caller passed
    read_ms: float | None = None  # time spent decoding ``image`` here (video/camera frames), in ms
    error: TrtpipeError | None = None  # an entry that is not an image (the stream reports it and goes on)


class FrameSource:
    """An iterator of :class:`SourceItem` over one or more inputs, with ``close()`` for what it opened.

    Build it with :func:`open_source`. ``kind`` is "images" (files, folders, arrays), "video" or "camera";
    ``description`` says what was opened, e.g. "folder photos/ (500 images)".
    """

    def __init__(self, items: Iterator[SourceItem], kind: str, description: str, captures: list | None = None):
        self._items = items
        self.kind = kind
        self.description = description
        self._captures = captures if captures is not None else []

    def __iter__(self) -> "FrameSource":
        return self

    def __next__(self) -> SourceItem:
        return next(self._items)

    def close(self) -> None:
        """Releases every video capture this source opened and closes a generator it was given; harmless twice."""
        for capture in self._captures:
            capture.release()
        self._captures.clear()
        close = getattr(self._items, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:  # "generator already executing": a reader thread is inside it and closes it when it stops
                pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_source(source: Any, *, max_frames: int | None = None) -> FrameSource:
    """Opens what a stream reads: a path (image, folder, video), a camera index, a URL, an array, or an iterable.

    Args:
        source: an ``int`` camera index; a ``str``/``Path`` to an image file, a folder (its images, sorted by
            name, not recursive) or a video file; a network stream URL (rtsp://, http:// ...); one BGR
            ``np.ndarray``; or an iterable (list, generator ...) of any of these, read in order.
        max_frames: stop after this many items (a camera never ends by itself). Defaults to no limit.

    Returns:
        A :class:`FrameSource` (close it, or use it as a context manager).

    Raises:
        InputError: a path that does not exist, a folder without images, a video or camera OpenCV cannot
            open, or a ``max_frames`` below 1. A list is checked entry by entry before anything is read;
            entries of a generator are checked as they come (a bad one becomes an error item).
    """
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames is {max_frames}, expected at least 1", "leave it unset to read the whole source")
    captures: list = []
    if isinstance(source, (list, tuple)):
        for entry in source:  # fail before streaming on a typo, as a CLI user expects
            if isinstance(entry, (str, Path)) and not _is_url(entry):
                _check_path(Path(entry))
        kind = _kind_of_list(source)
        description = _describe_list(source)
        items = _expand(source, captures)
    else:
        kind, description = _kind_and_description(source)
        if kind in ("camera", "video"):
            # Opened now: a camera that is not there fails before any work (and before a table header is printed).
            capture = _open_capture(source if isinstance(source, int) else str(source))
            captures.append(capture)
            items = _capture_frames(capture, f"camera {source}" if kind == "camera" else str(source), captures)
        else:
            items = _expand(source, captures)
    return FrameSource(_limit(items, max_frames), kind, description, captures)


# ----------------------------------------------------------------------------------------------
# What a source is
# ----------------------------------------------------------------------------------------------


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.lower().startswith(STREAM_SCHEMES)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(
            f"{path}: no such file or folder",
            "give image files, a folder of images, a video file, or a camera index such as 0",
        )


def _kind_and_description(source: Any) -> tuple[str, str]:
    if isinstance(source, bool):
        raise InputError(f"source {source!r} is a bool", "give a path, a camera index (int) or images")
    if isinstance(source, int):
        return "camera", f"camera {source}"
    if _is_url(source):
        return "video", f"stream {source}"
    if isinstance(source, (str, Path)):
        path = Path(source)
        _check_path(path)
        if path.is_dir():
            count = len(_folder_images(path))
            if count == 0:
                raise InputError(
                    f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES[:6])} ...)",
                    "point at a folder of JPEG/PNG files, or give the files themselves",
                )
            return "images", f"folder {path} ({count} images)"
        if _is_video(path):
            return "video", f"video {path}"
        return "images", f"image {path}"
    if isinstance(source, np.ndarray):
        return "images", "1 image array"
    if isinstance(source, Iterable):
        return "images", f"{type(source).__name__} of images"
    raise InputError(
        f"source is a {type(source).__name__}, expected a path, a folder, a video, a camera index or images",
        "pass e.g. 'photos/', 'clip.mp4', 0, or a list of BGR numpy images",
    )


def _kind_of_list(entries) -> str:
    kinds = {_kind_and_description(e)[0] if isinstance(e, (str, Path, int)) and not isinstance(e, bool) else "images"
             for e in entries}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _describe_list(entries) -> str:
    folders = sum(1 for e in entries if isinstance(e, (str, Path)) and not _is_url(e) and Path(e).is_dir())
    files = sum(1 for e in entries if isinstance(e, (str, Path)) and not _is_url(e) and Path(e).is_file())
    arrays = sum(1 for e in entries if isinstance(e, np.ndarray))
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((files, "file"), (folders, "folder"), (arrays, "array")) if n]
    return ", ".join(parts) if parts else f"{len(entries)} entries"


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _expand(source: Any, captures: list) -> Iterator[SourceItem]:
    """Yields the items of ``source`` in order; nested lists, folders and videos are expanded in place."""
    if isinstance(source, bool):
        yield SourceItem(name=repr(source), error=InputError(f"entry {source!r} is a bool", "give paths or images"))
    elif isinstance(source, int):
        yield from _opened_frames(source, f"camera {source}", captures)
    elif _is_url(source):
        yield from _opened_frames(source, str(source), captures)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            yield SourceItem(name=str(source), error=InputError(f"{source}: no such file or folder", "check the path"))
        elif path.is_dir():
            for image in _folder_images(path):
                yield SourceItem(name=str(image), path=image)
        elif _is_video(path):
            yield from _opened_frames(str(path), str(source), captures)
        else:
            yield SourceItem(name=str(source), path=path)  # any other suffix: let the decoder say whether it is an image
    elif isinstance(source, np.ndarray):
        yield SourceItem(name="image", image=source)
    elif isinstance(source, Iterable) and not isinstance(source, (bytes, dict)):
        for position, entry in enumerate(source):
            if isinstance(entry, np.ndarray):
                yield SourceItem(name=f"image {position}", image=entry)
            elif isinstance(entry, (str, Path, int)) and not isinstance(entry, bool):
                yield from _expand(entry, captures)
            else:
                yield SourceItem(
                    name=f"entry {position}",
                    error=InputError(
                        f"entry {position} of the source is a {type(entry).__name__}, expected a BGR image array or a path",
                        "yield numpy images (as cv2 gives them) or image file paths",
                    ),
                )
    else:
        yield SourceItem(name=repr(source)[:60], error=InputError(
            f"source entry is a {type(source).__name__}, expected a path or an image", "give paths or numpy images"))


def _open_capture(target: int | str):
    """An opened ``cv2.VideoCapture`` of a camera index, video file or stream URL.

    Raises:
        InputError: OpenCV cannot open it (OpenCV's own warnings are kept off the console: this says it once).
    """
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        capture = cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        capture.release()
        what = f"camera {target}" if isinstance(target, int) else f"video {target}"
        raise InputError(
            f"OpenCV cannot open {what}",
            "check that the camera is connected and free (ls /dev/video*)" if isinstance(target, int)
            else "check the file plays (ffprobe), or convert it to H.264 MP4; OpenCV's wheel reads what its FFmpeg reads",
        )
    return capture


def _opened_frames(target: int | str, label: str, captures: list) -> Iterator[SourceItem]:
    """A video or camera among other entries: one that cannot be opened is an error item, and the rest goes on."""
    try:
        capture = _open_capture(target)
    except InputError as exc:
        yield SourceItem(name=label, error=exc)
        return
    captures.append(capture)
    try:
        yield from _capture_frames(capture, label, captures)
    except InputError as exc:  # opened, but no frame
        yield SourceItem(name=label, error=exc)


def _capture_frames(capture, label: str, captures: list) -> Iterator[SourceItem]:
    """Frames of an opened capture, decoded here in order; the capture is released at the end."""
    frame_index = 0
    try:
        while True:
            start = time.perf_counter()
            ok, frame = capture.read()
            read_ms = (time.perf_counter() - start) * 1e3
            if not ok or frame is None:
                if frame_index == 0:
                    raise InputError(
                        f"{label} opened but gave no frame",
                        "check the camera is not used by another program, or that the video is not empty",
                    )
                return
            yield SourceItem(name=f"{label} frame {frame_index}", image=frame, read_ms=read_ms)
            frame_index += 1
    finally:
        capture.release()
        if capture in captures:
            captures.remove(capture)


def _limit(items: Iterator[SourceItem], max_frames: int | None) -> Iterator[SourceItem]:
    try:
        for count, item in enumerate(items):
            if max_frames is not None and count >= max_frames:
                return
            yield item
    finally:
        items.close()  # releases a capture even when the reader stops early
