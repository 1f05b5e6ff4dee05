"""Class-name lists for classification outputs: bundled sets ("imagenet1k") or a text file.

Part of the deployment path: reads package data with the standard library only (no torch,
no torchvision), so a slim image can print "Egyptian cat" instead of "285".
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from trtpipe.errors import InputError

# label-set name -> file in trtpipe/data (one class name per line, in class-index order).
# imagenet1k_labels.txt was generated once from torchvision's weights meta "categories".
BUNDLED_LABELS = {
    "imagenet1k": "imagenet1k_labels.txt",
}


def load_labels(name: str) -> list[str]:
    """Returns the class names of a label set, index i naming class i.

    Args:
        name: a bundled set ("imagenet1k") or the path of a text file with one name per line.

    Returns:
        The class names, in class-index order.
    """
    if name in BUNDLED_LABELS:
        return list(_bundled(name))
    path = Path(name)
    if path.suffix == ".txt" and path.is_file():
        return _read_lines(path.read_text(encoding="utf-8"))
    raise InputError(
        f"label set {name!r} is neither a bundled set ({', '.join(sorted(BUNDLED_LABELS))}) nor a .txt file",
        f"use one of {', '.join(sorted(BUNDLED_LABELS))}, or give a text file with one class name per line",
    )


@functools.lru_cache(maxsize=None)
def _bundled(name: str) -> tuple[str, ...]:
    # Cached as a tuple (immutable); load_labels hands out a fresh list each call.
    text = resources.files("trtpipe").joinpath("data", BUNDLED_LABELS[name]).read_text(encoding="utf-8")
    return tuple(_read_lines(text))


def _read_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]
