"""A default calibration set made offline: scikit-image's bundled photos, augmented to a few hundred images.

Real ImageNet-like data is not shipped here; these photos (astronaut, cat, coffee, rocket, motorcycle ...)
cropped, flipped, rescaled and colour-jittered give natural-image statistics, which is what activation
ranges need. For production, calibrate on a few hundred images from the deployment's own data.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtpipe.errors import DependencyError, InputError
from trtpipe.io import ensure_writable_dir
from trtpipe.quant.images import IMAGE_SUFFIXES

log = logging.getLogger("trtpipe")

# Bundled with scikit-image (no download); colour photos first, then grayscale ones (kept: cameras see those too).
SOURCE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png", "brick.png", "grass.png", "gravel.png",
    "coins.png", "moon.png", "page.png", "cell.png",
)
DEFAULT_COUNT = 320


@dataclass(frozen=True)
class CalibDataResult:
    folder: Path
    written: int  # 0 when the folder already held images
    existing: int
    seconds: float

    def summary(self) -> str:
        if self.written == 0:
            return f"{self.folder} already holds {self.existing} images; left as is (delete it to regenerate)"
        return f"wrote {self.written} calibration images to {self.folder} in {self.seconds:.1f} s"


def source_photos() -> list[Path]:
    """The scikit-image photo files available on this machine."""
    try:
        import skimage.data
    except ImportError:
        raise DependencyError(
            "scikit-image is not installed; its bundled photos are the default calibration set",
            "pip install 'trtpipe[export]' (or scikit-image), or fill the folder with your own images",
        ) from None
    root = Path(skimage.data.__file__).parent
    return [root / name for name in SOURCE_PHOTOS if (root / name).is_file()]


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view of a BGR uint8 photo: crop (30-100% of the area), flip, rescale, colour jitter."""
    import cv2

    h, w = image.shape[:2]
    area = h * w * rng.uniform(0.3, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, max(16, round(np.sqrt(area / aspect)))))
    cw = int(min(w, max(16, round(np.sqrt(area * aspect)))))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    view = image[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        view = view[:, ::-1]
    short = rng.integers(224, 401)
    scale = short / min(ch, cw)
    view = cv2.resize(
        np.ascontiguousarray(view), (max(1, round(cw * scale)), max(1, round(ch * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    hsv = cv2.cvtColor(view, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180  # hue, OpenCV's 0..180 scale
    hsv[..., 1] *= rng.uniform(0.7, 1.3)  # saturation
    view = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
    view = (view - view.mean()) * contrast + view.mean() + brightness
    return view.clip(0, 255).astype(np.uint8)


def make_calib_data(folder: str | Path = "calib_data", count: int = DEFAULT_COUNT, seed: int = 0) -> CalibDataResult:
    """Fills ``folder`` with ``count`` augmented photos if it holds no images; leaves it alone otherwise.

    Files are written to a temporary folder beside it and moved into place at the end, so an
    interrupted run leaves no half-filled folder.
    """
    import cv2

    from trtpipe.pipeline.preprocess import load_image

    folder = Path(folder)
    start = time.perf_counter()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, expected a folder for calibration images", "choose another path")
    existing = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES] if folder.is_dir() else []
    if existing:
        return CalibDataResult(folder, 0, len(existing), time.perf_counter() - start)
    if count < 1:
        raise InputError(f"--count is {count}, expected at least 1", "e.g. --count 320")
    photos = [load_image(p) for p in source_photos()]
    if not photos:
        raise DependencyError("scikit-image ships none of its sample photos here", "fill the folder with your own images")
    rng = np.random.default_rng(seed)
    ensure_writable_dir(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        for index in range(count):
            source = index % len(photos)
            view = augment(photos[source], rng)
            name = f"{SOURCE_PHOTOS[source].split('.')[0]}_{index:04d}.jpg"
            if not cv2.imwrite(str(staging / name), view, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                raise InputError(f"could not write {staging / name}", "check free disk space and permissions")
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # an empty folder is replaced by the filled one in one rename
        if folder.is_dir():  # holds other files but no images: move the images in
            for path in sorted(staging.iterdir()):
                path.rename(folder / path.name)
        else:
            staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return CalibDataResult(folder, count, 0, time.perf_counter() - start)
