"""The calibration cache: activation ranges (and layer sensitivities) saved as JSON beside the engine.

A cache is reused only when its key matches: the sha256 of the ONNX *and of the external data files
holding its weights* (a re-export can leave the .onnx byte-identical while the weights beside it change),
the preprocess spec, the image set's hash, the method and the image count. A cache written for another
model is an error when the user names it, so ranges are never applied to a network they were not measured on.

Each verb keeps its own cache file: the build's is ``<stem>.int8.calib.json`` (its sha256 is in the engine's
sidecar); ``fidelity`` and ``sensitivity`` write ``<stem>.<verb>.int8.calib.json``, so measuring never
rewrites the cache an engine was built with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trtpipe.errors import InputError
from trtpipe.io import atomic_write_text
from trtpipe.spec import PreprocessSpec, read_json

CACHE_FORMAT = "trtpipe-calibration-cache"
CACHE_VERSION = 1


@dataclass(frozen=True)
class CacheKey:
    """What calibrated ranges depend on; any change means calibrating again."""

    model: str  # ONNX file stem, for messages
    onnx_sha256: str
    preprocess_sha256: str
    images_sha256: str
    method: str
    images: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def spec_sha256(spec: PreprocessSpec) -> str:
    """Hash of the fields that change what the network sees (not the model's labels or weights tag)."""
    fields = {k: v for k, v in spec.to_dict().items() if k not in ("model", "labels", "weights", "source", "task")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def default_cache_path(work_dir: str | Path, stem: str, tag: str | None = None, precision: str = "int8") -> Path:
    """``<stem>.int8.calib.json`` (the build's), or ``<stem>.<tag>.int8.calib.json`` (a measuring verb's own);
    ``precision`` fp8 writes ``.fp8.calib.json`` (its ranges are the same, its bias shifts and ranking are not)."""
    return Path(work_dir) / (f"{stem}.{tag}.{precision}.calib.json" if tag else f"{stem}.{precision}.calib.json")


def load_cache(path: str | Path, key: CacheKey, explicit: bool = False) -> dict[str, Any] | None:
    """Returns the cached entry when ``path`` holds one for ``key``, else None (calibrate again).

    Args:
        explicit: the user named this cache; one made for another model is then an error, not a miss.

    Raises:
        InputError: an explicit cache was made for another model, or is not a trtpipe calibration cache.
    """
    path = Path(path)
    if not path.is_file():
        if explicit:
            raise InputError(f"calibration cache {path}: no such file", "drop --cache to calibrate and write one")
        return None
    try:
        data = read_json(path)
    except InputError:
        if explicit:
            raise
        return None  # a corrupt automatic cache is rewritten
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        if explicit:
            raise InputError(f"{path} is not a trtpipe calibration cache", "give a .calib.json written by trtpipe")
        return None
    cached_key = data.get("key", {})
    if cached_key.get("onnx_sha256") != key.onnx_sha256:
        if explicit or cached_key.get("model") != key.model:
            raise InputError(
                f"calibration cache {path} was made for model {cached_key.get('model')!r} "
                f"(onnx sha256 {str(cached_key.get('onnx_sha256'))[:12]}), not {key.model!r} "
                f"(sha256 {key.onnx_sha256[:12]})",
                "delete the cache or give this model's own; ranges of another network would be wrong",
            )
        return None  # the same model re-exported: its ranges are stale
    if data.get("version") != CACHE_VERSION or cached_key != asdict(key):
        return None
    return data


def save_cache(path: str | Path, key: CacheKey, ranges: dict[str, float], **extra: Any) -> Path:
    """Writes ranges (and ``extra`` entries such as ``sensitivity``) atomically."""
    data = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": asdict(key), "ranges": ranges, **extra}
    return atomic_write_text(Path(path), json.dumps(data, indent=1, sort_keys=False) + "\n")
