"""TensorRT 10's classic precision path: BuilderFlag.FP16 / INT8 with an IInt8EntropyCalibrator2.

Deprecated since TensorRT 10.1 and removed in TensorRT 11 and TensorRT-RTX, where precision lives in
the ONNX (see trtpipe.quant.prepare); kept for users on TensorRT 10 who want TensorRT's own calibrator.

The calibrator class is made against the ``trt`` module it is given, so tests can pass a fake module
whose ``IInt8EntropyCalibrator2`` is a plain base class, and device copies are injectable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Protocol

import numpy as np

from trtpipe.errors import ConfigError, InputError
from trtpipe.io import atomic_write_bytes
from trtpipe.quant.feeds import cast_batch

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
        """Feeds calibration batches from device memory it owns, one buffer per network input; reads/writes the cache.

        TensorRT 10 reads each batch with the calibration profile's OPT shape (``set_calibration_profile``; profile 0
        when none is set), so every batch must have exactly that shape, and ``get_batch(names)`` must return one
        device pointer per input, in the order of ``names``: the bindings copy that many pointers out of the list
        (``pyInt8.cpp`` ``getBatch``), reading past a shorter one.

        Args:
            batches: per batch, input name -> array of the OPT shape (a bare array feeds a single input named in
                ``input_names``); a batch of another size is dropped (TensorRT reads full ones). Each array is cast
                to its input's dtype in ``input_dtypes`` (an integer input gets rounded, clipped pixels).
            batch_size: images per batch (the OPT batch).
            cache_path: TensorRT's calibration cache; read when present (calibration is then skipped).
            allocate: ``nbytes -> DeviceInput``; defaults to CUDA memory via trtpipe.cuda.
            input_names: the network's inputs, when ``batches`` yields bare arrays. Defaults to ("input",).
            input_dtypes: input name -> the numpy dtype TensorRT reads from its buffer (float32 for inputs not
                named): the device buffer holds exactly those bytes.
        """

        def __init__(
            self,
            batches: Iterable[np.ndarray | Mapping[str, np.ndarray]],
            batch_size: int,
            cache_path: str | Path,
            allocate: Callable[[int], DeviceInput] = CudaDeviceInput,
            input_names: tuple[str, ...] = ("input",),
            input_dtypes: Mapping[str, np.dtype] | None = None,
        ):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch_size = int(batch_size)
            self.cache_path = Path(cache_path)
            self._batches: Iterator = iter(batches)
            self._allocate = allocate
            self._input_names = tuple(input_names)
            self._dtypes = {name: np.dtype(dtype) for name, dtype in (input_dtypes or {}).items()}
            self._device: dict[str, DeviceInput] = {}  # kept alive: TensorRT reads them after get_batch returns
            self.batches_fed = 0

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names, *args):
            for batch in self._batches:
                feeds = batch if isinstance(batch, Mapping) else {self._input_names[0]: batch}
                if any(len(array) != self.batch_size for array in feeds.values()):
                    log.info("dropped a short calibration batch of %d images", min(len(a) for a in feeds.values()))
                    continue
                missing = [name for name in names if name not in feeds]
                if missing:
                    raise InputError(
                        f"TensorRT asks calibration data for inputs {list(names)}; the batches have none for {missing}",
                        "implicit INT8 calibration needs data for every network input; use the default explicit mode",
                    )
                pointers = []
                for name in names:
                    dtype = self._dtypes.get(name, np.dtype(np.float32))
                    array = np.ascontiguousarray(cast_batch(np.asarray(feeds[name]), dtype.name))
                    device = self._device.get(name)
                    if device is None:
                        device = self._device[name] = self._allocate(array.nbytes)
                    device.copy_from(array)
                    pointers.append(int(device.ptr))
                self.batches_fed += 1
                return pointers
            return None  # no more data: TensorRT computes the ranges

        def read_calibration_cache(self, *args):
            if self.cache_path.is_file():
                log.info("using TensorRT calibration cache %s (calibration skipped)", self.cache_path)
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache, *args) -> None:
            atomic_write_bytes(self.cache_path, memoryview(cache).tobytes())

        def close(self) -> None:
            """Frees the device buffers; the builder calls it when the build is over."""
            devices, self._device = self._device, {}
            for device in devices.values():
                device.close()

    return EntropyCalibrator


def configure_classic(trt, builder, network, builder_config, config, spec, cache_path, calibration_profile=None):
    """Sets BuilderFlag.FP16 / INT8 (with an EntropyCalibrator) on a TensorRT 10 builder config.

    Args:
        calibration_profile: the ``IOptimizationProfile`` TensorRT calibrates with (set with
            ``set_calibration_profile``); its OPT shape is the calibration batch. Defaults to none set (TensorRT
            then uses profile 0, whose OPT is taken from ``network``'s fixed batch or ``config.batch``).

    Returns:
        (notes for the sidecar, the calibrator or None). The config holds the calibrator during the build (the
        bindings keep it alive); the caller closes it after the build (its device memory) and drops it.

    Raises:
        ConfigError: on TensorRT 11 / TensorRT-RTX (no BuilderFlag precision), INT8 without images, or a network
            with inputs the calibration images cannot feed.
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
    if config.precision != "int8":
        return notes, None
    from trtpipe.quant.images import load_images
    from trtpipe.quant.prepare import Int8Options
    from trtpipe.runtime.tensorrt_engine import array_dtype

    options = Int8Options.from_config(config)
    if spec is None:
        raise InputError(
            "--int8-mode implicit needs the model's preprocess spec to prepare calibration images, none found",
            "export with `trtpipe export MODEL` (it writes <stem>.preprocess.json beside the ONNX)",
        )
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if len(inputs) != 1:
        raise ConfigError(
            f"--int8-mode implicit feeds calibration images to one input; this network has {len(inputs)} "
            f"({', '.join(t.name for t in inputs)})",
            "drop --int8-mode implicit: the default explicit mode calibrates with ONNX Runtime",
        )
    name = inputs[0].name
    dtype = array_dtype(trt, inputs[0].dtype, name, "the network")  # a uint8 image input reads uint8 pixels
    batch_size = _calibration_batch(inputs[0], calibration_profile)
    images = load_images(options.images, spec, options.max_images, batch_size)
    calibrator = make_entropy_calibrator(trt)(images.batches(batch_size), batch_size, cache_path, input_names=(name,),
                                              input_dtypes={name: dtype})
    builder_config.set_flag(trt.BuilderFlag.INT8)
    builder_config.int8_calibrator = calibrator
    if calibration_profile is not None:
        builder_config.set_calibration_profile(calibration_profile)
    notes.append(f"BuilderFlag.INT8 with IInt8EntropyCalibrator2 on {len(images)} images in batches of {batch_size} "
                 f"(the calibration profile's OPT; cache {cache_path})")
    return notes, calibrator


def _calibration_batch(tensor, profile) -> int:
    """The batch TensorRT reads per calibration batch: the input's fixed batch, else the calibration profile's OPT."""
    shape = tuple(tensor.shape)
    if shape and shape[0] > 0:
        return int(shape[0])
    if profile is not None and profile.get_shape(tensor.name):
        return int(profile.get_shape(tensor.name)[1][0])
    return 1  # profile 0 of a trtpipe build has OPT batch 1 unless --batch says otherwise
