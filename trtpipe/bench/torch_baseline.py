"""PyTorch eager as a benchmark baseline: a zoo model behind the Engine interface, CPU or CUDA.

The same bench loops, inputs and report then time it beside TensorRT and ONNX Runtime. On CPU the
device stages do not exist and are reported as absent; on CUDA, H2D / compute / D2H are timed with
``torch.cuda.Event`` on the model's stream, and :meth:`TorchEngine.enqueue_ahead` gives the
enqueue-ahead throughput mode (kernels queue asynchronously, as TensorRT's do).
"""

from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from trtpipe.errors import ConfigError, DependencyError
from trtpipe.runtime.base import ClosedError, Engine, StageTimes, validate_feeds
from trtpipe.spec import PreprocessSpec, TensorInfo

_TORCH_PRECISIONS = {"fp32": "float32", "fp16": "float16"}


def load_torch_model(
    name: str, weights: str = "auto", device: str | None = None, precision: str = "fp32", threads: int | None = None
) -> "TorchEngine":
    """Builds zoo model ``name`` with ``weights`` and wraps it as an Engine.

    Args:
        name: zoo name (``mobilenetv2``, ``timm:resnet18`` ...).
        weights: auto | pretrained | random | checkpoint path (see the zoo). Defaults to auto, which
            falls back to random weights with a warning where they cannot be downloaded.
        device: "cpu" or "cuda". Defaults to CUDA when torch sees a GPU, else the CPU.
        precision: fp32, or fp16 (CUDA only). Defaults to fp32.
        threads: intra-op CPU threads (``torch.set_num_threads``, process-wide). Defaults to torch's choice.
    """
    try:
        import torch
    except ImportError:
        raise DependencyError("the torch backend needs PyTorch", "pip install 'trtpipe[export]'") from None
    from trtpipe.zoo.registry import get_model, load_model

    if threads:
        torch.set_num_threads(threads)
    loaded = load_model(get_model(name), weights)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return TorchEngine(loaded.module, loaded.spec, device=device, precision=precision)


class TorchEngine(Engine):
    """A torch module in eval mode, run under ``torch.inference_mode``.

    Args:
        module: the model.
        spec: its preprocess spec (input size, weights); the input is ``input`` of shape (-1, 3, H, W).
        device: "cpu" or "cuda". Defaults to the CPU.
        precision: fp32, or fp16 on CUDA. Defaults to fp32.
    """

    def __init__(self, module, spec: PreprocessSpec, *, device: str = "cpu", precision: str = "fp32"):
        import torch

        if precision not in _TORCH_PRECISIONS:
            raise ConfigError(
                f"the torch backend runs fp32 or fp16, not {precision!r}",
                "INT8 runs through a Q/DQ ONNX: trtpipe bench MODEL_int8.onnx --backend onnxruntime",
            )
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("the torch backend was asked for CUDA, and torch sees no GPU", "use --device cpu")
        if precision == "fp16" and not device.startswith("cuda"):
            raise ConfigError(
                "fp16 on the torch CPU backend is not a configuration anyone deploys (many CPU kernels lack it)",
                "bench torch in fp32 on the CPU, or fp16 on a GPU",
            )
        self._torch = torch
        self.device = torch.device(device)
        self.precision = precision
        self.spec = spec
        self.backend = f"torch-{self.device.type}"
        dtype = getattr(torch, _TORCH_PRECISIONS[precision])
        self._module = module.eval().to(self.device, dtype=dtype)
        self._dtype = dtype
        c = spec.channels
        shape = (-1, c, spec.height, spec.width) if spec.layout == "NCHW" else (-1, spec.height, spec.width, c)
        self._inputs = (TensorInfo("input", shape, "float32"),)
        self._outputs = (TensorInfo("output", (-1, -1), "float32"),)
        self.threads = torch.get_num_threads()
        self._closed = False

    @property
    def device_timed(self) -> bool:
        """True when stage times come from CUDA events (bench reports them as device stages)."""
        return self.device.type == "cuda"

    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        if self._closed:
            raise ClosedError("TorchEngine")
        torch = self._torch
        start = time.perf_counter()
        validate_feeds(feeds, self._inputs, f"torch model {self.spec.model}")
        host = torch.from_numpy(np.ascontiguousarray(feeds["input"]))
        with torch.inference_mode():
            if self.device.type != "cuda":
                output = self._module(host.to(self._dtype))
                result = output.float().numpy()
                ms = (time.perf_counter() - start) * 1e3
                return {"output": result}, StageTimes(end_to_end=ms)
            events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
            events[0].record()
            device_input = host.pin_memory().to(self.device, non_blocking=True).to(self._dtype)
            events[1].record()
            output = self._module(device_input)
            events[2].record()
            result = output.float().to("cpu", non_blocking=False)
            events[3].record()
            torch.cuda.synchronize(self.device)
            ms = (time.perf_counter() - start) * 1e3
            return {"output": result.numpy()}, StageTimes(
                h2d=events[0].elapsed_time(events[1]),
                compute=events[1].elapsed_time(events[2]),
                d2h=events[2].elapsed_time(events[3]),
                end_to_end=ms,
            )

    def enqueue_ahead(self, feeds: Mapping[str, np.ndarray], transfers: bool = True):
        """An AsyncTarget (see bench.measure) for the enqueue-ahead mode; None on the CPU (no queue there)."""
        if self.device.type != "cuda":
            return None
        return _TorchCudaQueue(self, feeds["input"], transfers)

    def close(self) -> None:
        self._closed = True
        self._module = None


class _TorchCudaQueue:
    """Queues torch CUDA inferences without synchronizing; each carries its own timing events."""

    def __init__(self, engine: TorchEngine, array: np.ndarray, transfers: bool):
        torch = engine._torch
        self._torch, self._engine, self._transfers = torch, engine, transfers
        self._pinned = torch.from_numpy(np.ascontiguousarray(array)).pin_memory()
        self._staged = self._pinned.to(engine.device).to(engine._dtype)  # inputs on the device once
        self._host_output = None

    def enqueue(self):
        torch = self._torch
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.inference_mode():
            events[0].record()
            device_input = self._pinned.to(self._engine.device, non_blocking=True).to(self._engine._dtype) if self._transfers else self._staged
            events[1].record()
            output = self._engine._module(device_input)
            events[2].record()
            if self._transfers:
                # Pinned destination: a pageable one would make the copy (and this enqueue) synchronous.
                if self._host_output is None:
                    self._host_output = torch.empty(output.shape, dtype=output.dtype).pin_memory()
                self._host_output.copy_(output, non_blocking=True)
            events[3].record()
        return events

    def wait(self, events) -> dict[str, float | None]:
        events[3].synchronize()
        return {
            "h2d": events[0].elapsed_time(events[1]) if self._transfers else None,
            "compute": events[1].elapsed_time(events[2]),
            "d2h": events[2].elapsed_time(events[3]) if self._transfers else None,
        }

    def close(self) -> None:
        self._staged = self._pinned = self._host_output = None
