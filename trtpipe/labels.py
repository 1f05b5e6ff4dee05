"""Class-name lists for task heads: bundled sets ("imagenet1k", "coco80", "ade20k150", ...) or a text file.

Part of the deployment path: reads package data with the standard library only (no torch,
no torchvision), so a slim image can print "Egyptian cat" instead of "285" and "person" instead of "0".

Label files hold one class name per line, index i naming class i; blank lines and lines starting with
``#`` (the bundled files' headers, which say where each list came from) are skipped.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Sequence

from trtpipe.errors import InputError

# label-set name -> (file in trtpipe/data, number of classes). Each file's header names its source.
BUNDLED_LABELS = {
    "imagenet1k": ("imagenet1k_labels.txt", 1000),  # ImageNet-1k classifiers
    "coco80": ("coco80_labels.txt", 80),  # COCO detectors with contiguous class ids (YOLO, DETR family)
    "coco91": ("coco91_labels.txt", 91),  # COCO category ids 0..90 with gaps (RF-DETR, torchvision detectors)
    "ade20k150": ("ade20k150_labels.txt", 150),  # ADE20K scene parsing (SegFormer, UperNet, PSPNet ...)
    "cityscapes19": ("cityscapes19_labels.txt", 19),  # Cityscapes train ids
    "voc21": ("voc21_labels.txt", 21),  # PASCAL VOC segmentation, 0 = background
}

LabelSource = str | Path | Sequence[str]


def load_labels(source: LabelSource, *, relative_to: str | Path | None = None) -> list[str]:
    """Returns the class names of a label set, index i naming class i.

    Args:
        source: a bundled set name (see ``BUNDLED_LABELS``), the path of a text file with one name per
            line, or the names themselves (a list or tuple of strings, returned as a copy).
        relative_to: a folder in which a relative file path is also looked up (e.g. the folder of the
            preprocess spec that names the file). Defaults to the working directory only.

    Returns:
        The class names, in class-index order (a new list: callers may change it).

    Raises:
        InputError: an unknown set name, a missing or empty file, or a list that is not of strings.
    """
    if isinstance(source, (list, tuple)):
        if not source or not all(isinstance(name, str) for name in source):
            raise InputError(
                f"labels {list(source)[:5]!r} are not a non-empty list of class names",
                "pass a list of strings (index i naming class i), a bundled set name, or a text file",
            )
        return list(source)
    text = str(source)
    if text in BUNDLED_LABELS:
        return list(_bundled(text))
    path = _find_file(Path(text), relative_to)
    if path is None:
        raise InputError(
            f"label set {text!r} is neither a bundled set ({', '.join(BUNDLED_LABELS)}) nor an existing file",
            f"use one of {', '.join(BUNDLED_LABELS)}, or give a text file with one class name per line",
        )
    try:
        names = _read_lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"label file {path} cannot be read ({exc})", "give a UTF-8 text file, one class name per line") from None
    if not names:
        raise InputError(f"label file {path} holds no class names", "write one class name per line, class 0 first")
    return names


def known_label_sets() -> dict[str, int]:
    """Bundled label-set name -> number of classes."""
    return {name: count for name, (_, count) in BUNDLED_LABELS.items()}


def _find_file(path: Path, relative_to: str | Path | None) -> Path | None:
    candidates = [path] if path.is_absolute() or relative_to is None else [path, Path(relative_to) / path]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


@functools.lru_cache(maxsize=None)
def _bundled(name: str) -> tuple[str, ...]:
    # Cached as a tuple (immutable); load_labels hands out a fresh list each call.
    file_name, count = BUNDLED_LABELS[name]
    names = tuple(_read_lines(resources.files("trtpipe").joinpath("data", file_name).read_text(encoding="utf-8")))
    if len(names) != count:  # a packaging bug, not user input
        raise RuntimeError(f"bundled label set {name} has {len(names)} names, expected {count}")
    return names


def _read_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def names_from_metadata(metadata: dict[str, str]) -> tuple[str, ...]:
    """Class names an exporter stored in the ONNX's ``metadata_props``; () when it stored none.

    Ultralytics writes ``names`` as a Python dict literal (``{0: 'person', 1: 'bicycle'}``); PaddleOCR/RapidOCR
    models carry ``character``, one name per line (for a recognition model: its CTC dictionary).
    """
    import ast

    text = metadata.get("names")
    if text:
        try:
            value = ast.literal_eval(text)  # a literal, never code: this is the exporter's own repr
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, dict):
            return tuple(str(value[key]) for key in sorted(value))
        if isinstance(value, (list, tuple)):
            return tuple(str(name) for name in value)
    text = metadata.get("character")
    if text:
        return tuple(text.split("\n"))
    return ()
