"""Triton Python-backend model that runs ``model.onnx`` with ONNX Runtime: for a Triton without the onnxruntime backend.

NVIDIA's Triton container has the onnxruntime backend, and `trtpipe triton-export` writes
``platform: "onnxruntime_onnx"`` for it. The Triton bundled in the nvidia-pytriton wheel ships only the
Python backend, so `trtpipe serve` on such a server writes the network model with this file as its
``model.py`` instead; its config.pbtxt says so in the parameter ``trtpipe_runner``. It keeps the
network a separate Triton model with its own dynamic batcher and instance group, so the serving
topology is the same as with the real backend.

Triton's dynamic batcher hands ``execute`` several requests; their inputs are concatenated along the
batch axis, run as one ONNX Runtime call (trtpipe's ``OnnxRuntimeEngine``), and split back per request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton
    pb_utils = None


class TritonPythonModel:
    """Triton's entry points: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict) -> None:
        import json

        from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

        folder = Path(args["model_repository"]) / args["model_version"]
        self.engine = OnnxRuntimeEngine(folder / "model.onnx", providers=["CPUExecutionProvider"])
        self.batched = json.loads(args["model_config"])["max_batch_size"] > 0
        self.input_names = [t.name for t in self.engine.inputs]

    def execute(self, requests: list) -> list:
        try:
            feeds = [
                {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
                for request in requests
            ]
            if not self.batched:
                results = [self.engine.infer(feed) for feed in feeds]
            else:
                sizes = [len(feed[self.input_names[0]]) for feed in feeds]
                joined = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.input_names}
                outputs = self.engine.infer(joined)
                edges = np.cumsum(sizes)[:-1]
                results = [dict(zip(outputs, parts)) for parts in zip(*(np.split(v, edges) for v in outputs.values()))]
            return [
                pb_utils.InferenceResponse([pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in result.items()])
                for result in results
            ]
        except Exception as exc:  # noqa: BLE001 - every request must get a response
            pb_utils.Logger.log_error(f"trtpipe onnxruntime runner: {type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))) for _ in requests]

    def finalize(self) -> None:
        self.engine.close()
