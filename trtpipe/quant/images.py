"""Calibration and evaluation images: found recursively in a folder, read with OpenCV, prepared by the runtime's code.

Images are resized once (``trtpipe.pipeline.preprocess.resize_one``, exactly the runtime's path) and kept
as uint8; batches are normalized on demand, so calibration, held-back checks and sensitivity analysis
reuse one decode of every file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from trtpipe.errors import InputError
from trtpipe.spec import PreprocessSpec

if TYPE_CHECKING:
    from trtpipe.quant.feeds import Feeder

log = logging.getLogger("trtpipe")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
RECOMMENDED_IMAGES = 300  # fewer calibrate, but ranges from a few hundred images are steadier
FILL_HINT = "put a few hundred representative images in it (make calib-data fills calib_data/ with sample photos)"


def find_images(folder: str | Path, max_images: int | None = None, seed: int = 0) -> list[Path]:
    """Image files under ``folder`` (recursively), shuffled deterministically by ``seed``, at most ``max_images``.

    Raises:
        InputError: the folder is missing, not a folder, or holds no image files.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"image folder {folder}: no such directory", FILL_HINT)
    if not folder.is_dir():
        raise InputError(f"{folder} is a file, expected a folder of images", "give the folder that holds the images")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise InputError(
            f"image folder {folder} holds no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} files", FILL_HINT
        )
    order = np.random.default_rng(seed).permutation(len(paths))
    paths = [paths[i] for i in order]
    return paths[:max_images] if max_images else paths


@dataclass
class ImageSet:
    """Images resized to the network input (uint8 NHWC, BGR), with their files; normalized per batch."""

    spec: PreprocessSpec
    paths: list[Path]
    resized: np.ndarray  # (N, H, W, 3) uint8 BGR, as resize_one leaves them
    skipped: list[tuple[Path, str]]  # unreadable files and why
    feeder: "Feeder | None" = None  # the network these images feed (dtype, fixed batch, feeds hook); None: float32
    notes: list[str] = field(default_factory=list, compare=False)  # what batching left out or padded, each said once

    def __len__(self) -> int:
        return len(self.paths)

    def for_network(self, feeder: "Feeder") -> "ImageSet":
        """The same images, batched for the network ``feeder`` describes (see :meth:`batches`)."""
        return dataclasses.replace(self, feeder=feeder)

    def batches(self, batch_size: int, indices: np.ndarray | None = None, ragged: str = "drop") -> Iterator:
        """Network inputs, ``batch_size`` images at a time.

        Without a feeder: normalized float32 arrays, the last batch possibly smaller. With one (:meth:`for_network`):
        arrays in the input's dtype (a feeds hook's dicts), and a network with a fixed batch gets batches of exactly
        that size whatever ``batch_size`` says; its ragged end is dropped or padded as ``ragged`` says
        (:func:`trtpipe.quant.feeds.batch_indices`), with a warning naming how many images.
        """
        from trtpipe.pipeline.preprocess import normalize_batch
        from trtpipe.quant.feeds import batch_indices

        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        fixed = self.feeder.fixed_batch if self.feeder is not None else None
        groups, note = batch_indices(indices, fixed or batch_size, fixed is not None, ragged)
        if note and note not in self.notes:
            self.notes.append(note)
            log.warning("%s", note)
        for group in groups:
            batch = normalize_batch(self.resized[group], self.spec)
            yield batch if self.feeder is None else self.feeder.feed(batch)

    def split(self, held_back: float) -> tuple[np.ndarray, np.ndarray]:
        """(calibration indices, held-back indices): every k-th image held back, so both halves span the set."""
        count = len(self)
        held = int(round(count * held_back))
        if held == 0:
            return np.arange(count), np.arange(0)
        step = count / held
        held_indices = np.unique((np.arange(held) * step + step / 2).astype(int).clip(0, count - 1))
        mask = np.ones(count, bool)
        mask[held_indices] = False
        return np.nonzero(mask)[0], held_indices

    def sha256(self) -> str:
        """Hash of the image set: the relative names and contents of the files used, in order."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(path.name.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def load_images(
    folder: str | Path,
    spec: PreprocessSpec,
    max_images: int | None = None,
    min_images: int = 1,
    seed: int = 0,
    progress: bool = True,
    purpose: str = "calibration",
) -> ImageSet:
    """Reads and resizes up to ``max_images`` images from ``folder`` for ``spec``.

    Unreadable files are skipped and listed in the log. Fewer than ``min_images`` usable images is an
    error; fewer than a few hundred calibration images is a warning.

    Raises:
        InputError: missing/empty folder, or fewer than ``min_images`` readable images.
    """
    from trtpipe.pipeline.preprocess import load_image, resize_one

    paths = find_images(folder, max_images, seed)
    resized = np.empty((len(paths), spec.height, spec.width, 3), np.uint8)
    kept, skipped = [], []
    for path in _progress(paths, f"reading {purpose} images", progress):
        try:
            image = load_image(path)
        except InputError as exc:
            skipped.append((path, exc.message))
            continue
        resized[len(kept)] = resize_one(image, spec)[0]
        kept.append(path)
    for path, why in skipped:
        log.warning("skipped %s", why if str(path) in why else f"{path}: {why}")
    if len(kept) < min_images:
        raise InputError(
            f"image folder {folder}: {len(kept)} readable images ({len(skipped)} unreadable skipped), "
            f"expected at least {min_images}",
            FILL_HINT,
        )
    if purpose == "calibration" and len(kept) < min(RECOMMENDED_IMAGES, max_images or RECOMMENDED_IMAGES):
        log.warning("calibrating on %d images from %s; a few hundred give steadier INT8 ranges", len(kept), folder)
    return ImageSet(spec, kept, resized[: len(kept)], skipped)


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=description, unit="img", leave=False, disable=None)
