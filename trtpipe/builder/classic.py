"""TensorRT 10's classic precision path: BuilderFlag.FP16 / INT8 with an IInt8EntropyCalibrator2.

Deprecated since TensorRT 10.1 and removed in TensorRT 11 and TensorRT-RTX, where precision lives in
the ONNX (see trtpipe.quant.prepare); kept for users on TensorRT 10 who want TensorRT's own calibrator.

The calibrator class is made against the ``trt`` module it is given, so tests can pass a fake module
whose ``IInt8EntropyCalibrator2`` is a plain base class, and device copies are injectable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from trtpipe.errors import ConfigError, InputError
from trtpipe.io import atomic_write_bytes

log = logging.getLogger("trtpipe")


class DeviceInput(Protocol):
    """Device memory for one calibration batch; ``ptr`` stays valid until ``close()``."""

    ptr: int

    def copy_from(self, batch: np.ndarray) -> None: ...

    def close(self) -> None: ...


class CudaDeviceInput:
    """A DeviceInput backed by trtpipe.cuda: pinned staging buffer, device buffer, synchronous copy."""

    def __init__(self, nbytes: int):
        from trtpipe import cuda

        self._cuda = cuda
        self.device = cuda.DeviceBuffer(nbytes)
        self.host = cuda.PinnedBuffer((nbytes,), np.uint8)
        self.stream = cuda.Stream()
        self.ptr = self.device.ptr

    def copy_from(self, batch: np.ndarray) -> None:
        data = np.ascontiguousarray(batch).view(np.uint8).reshape(-1)
        self.host.array[: data.size] = data
        self._cuda.copy_htod_async(self.device, self.host, data.size, self.stream)
        self.stream.synchronize()  # TensorRT reads the buffer as soon as get_batch returns

    def close(self) -> None:
        for resource in (self.stream, self.host, self.device):
            resource.close()


def make_entropy_calibrator(trt):
    """Returns the ``EntropyCalibrator`` class, a subclass of ``trt.IInt8EntropyCalibrator2``."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds fixed-size calibration batches from device memory it owns; reads/writes TensorRT's cache.

        Args:
            batches: float32 input batches; a short last batch is dropped (TensorRT expects full ones).
            batch_size: images per batch.
            cache_path: TensorRT's calibration cache; read when present (calibration is then skipped).
            allocate: ``nbytes -> DeviceInput``; defaults to CUDA memory via trtpipe.cuda.
        """

        def __init__(
            self,
            batches: Iterable[np.ndarray],
            batch_size: int,
            cache_path: str | Path,
            allocate: Callable[[int], DeviceInput] = CudaDeviceInput,
        ):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch_size = int(batch_size)
            self.cache_path = Path(cache_path)
            self._batches: Iterator[np.ndarray] = iter(batches)
            self._allocate = allocate
            self._device: DeviceInput | None = None  # kept alive: TensorRT reads it after get_batch returns
            self.batches_fed = 0

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names, *args):
            for batch in self._batches:
                if len(batch) != self.batch_size:
                    log.info("dropped a short calibration batch of %d images", len(batch))
                    continue
                batch = np.ascontiguousarray(batch, dtype=np.float32)
                if self._device is None:
                    self._device = self._allocate(batch.nbytes)
                self._device.copy_from(batch)
                self.batches_fed += 1
                return [int(self._device.ptr)]
            return None  # no more data: TensorRT computes the ranges

        def read_calibration_cache(self, *args):
            if self.cache_path.is_file():
                log.info("using TensorRT calibration cache %s (calibration skipped)", self.cache_path)
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache, *args) -> None:
            atomic_write_bytes(self.cache_path, memoryview(cache).tobytes())

        def close(self) -> None:
            if self._device is not None:
                self._device.close()
                self._device = None

    return EntropyCalibrator


def configure_classic(trt, builder, network, builder_config, config, spec, cache_path) -> list[str]:
    """Sets BuilderFlag.FP16 / INT8 (with an EntropyCalibrator) on a TensorRT 10 builder config.

    Returns:
        notes for the sidecar. The calibrator is stored on ``builder_config`` so it outlives the build call.

    Raises:
        ConfigError: on TensorRT 11 / TensorRT-RTX (no BuilderFlag precision), or INT8 without images.
    """
    if not hasattr(trt, "IInt8EntropyCalibrator2") or not hasattr(trt.BuilderFlag, "INT8"):
        raise ConfigError(
            f"classic precision (BuilderFlag.FP16/INT8) is not in TensorRT {getattr(trt, '__version__', '?')}",
            "drop --int8-mode implicit / --fp16-mode flag: the default explicit mode writes precision into the ONNX",
        )
    notes = []
    if config.precision == "fp16" or config.precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16 rather than FP32
        notes.append("BuilderFlag.FP16")
    if config.precision == "int8":
        from trtpipe.quant.images import load_images
        from trtpipe.quant.prepare import Int8Options

        options = Int8Options.from_config(config)
        if spec is None:
            raise InputError(
                "--int8-mode implicit needs the model's preprocess spec to prepare calibration images, none found",
                "export with `trtpipe export MODEL` (it writes <stem>.preprocess.json beside the ONNX)",
            )
        batch_size = _profile_batch(network)
        images = load_images(options.images, spec, options.max_images, batch_size)
        calibrator = make_entropy_calibrator(trt)(images.batches(batch_size), batch_size, cache_path)
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.int8_calibrator = calibrator
        _keep_alive(builder_config, calibrator)
        notes.append(f"BuilderFlag.INT8 with IInt8EntropyCalibrator2 on {len(images)} images (cache {cache_path})")
    return notes


_ALIVE: dict[int, object] = {}


def _keep_alive(builder_config, calibrator) -> None:
    """Ties the calibrator (and its device memory) to the builder config's lifetime.

    TensorRT calls it during build_serialized_network; a calibrator collected before then would hand
    TensorRT a freed pointer.
    """
    try:
        builder_config.trtpipe_calibrator = calibrator
    except AttributeError:  # binding objects without a __dict__
        _ALIVE[id(builder_config)] = calibrator


def _profile_batch(network) -> int:
    """Calibration batch: the input's fixed batch, else 8."""
    shape = tuple(network.get_input(0).shape)
    return int(shape[0]) if shape and shape[0] > 0 else 8
