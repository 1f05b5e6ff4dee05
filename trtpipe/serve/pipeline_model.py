"""Triton Python-backend model ``<name>_pipeline``: encoded image bytes in, trtpipe task results out.

`trtpipe triton-export` copies this file into the repository as ``<name>_pipeline/1/model.py``, beside
``pipeline.json``, ``preprocess.json`` and ``labels.txt``. The server's Python needs trtpipe installed
(its deployment dependencies: numpy, OpenCV), because decoding, preprocessing and the task heads are
trtpipe's own code, not a copy of it.

Per batch of requests handed over by Triton's dynamic batcher:

1. each request's ``image`` (UINT8 ``[1, nbytes]``, an encoded JPEG/PNG/...) is decoded; a request that
   is empty or not an image gets its own error response, the others go on;
2. the decoded images are preprocessed as one batch (``trtpipe.pipeline.preprocess``);
3. the network model is called through Triton (BLS), so Triton batches, schedules and places it;
4. the task head (``trtpipe.pipeline.heads``) turns the outputs into per-image results.

Outputs per task: classification ``class_ids`` INT32, ``scores`` FP32, ``labels`` BYTES (top-k, from the
request parameter ``topk`` or pipeline.json's default); detection ``boxes`` FP32 [K, 4] (x1, y1, x2, y2 in
source pixels), ``scores``, ``class_ids``, ``labels``; segmentation ``mask`` UINT16 [H, W] at the source size, and
the classes present, largest area first: ``class_ids`` INT32, ``fractions`` FP32 (of the pixels), ``labels`` BYTES.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton: the pure helpers below are still usable (tests)
    pb_utils = None

from trtpipe.errors import InputError, TrtpipeError

MAX_TOPK = 1000


def decode_image(data: np.ndarray) -> np.ndarray:
    """Encoded image bytes (uint8, any shape with one image) -> BGR uint8 ``(H, W, 3)``.

    Raises:
        InputError: empty input, or bytes OpenCV cannot decode.
    """
    import cv2

    from trtpipe.pipeline.preprocess import as_bgr_uint8

    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if data.size == 0:
        raise InputError("input 'image' is empty (0 bytes)", "send the bytes of an encoded image file (JPEG, PNG, ...)")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(
            f"input 'image' ({data.size} bytes) is not an image OpenCV can decode",
            "send the file's bytes as they are on disk (JPEG, PNG, BMP, TIFF, WebP), not decoded pixels",
        )
    return as_bgr_uint8(image, name="input 'image'")


def read_topk(parameters_json: str, default: int) -> int:
    """The request parameter ``topk`` (default when absent), checked to be 1..1000."""
    parameters = json.loads(parameters_json or "{}")
    value = parameters.get("topk", default)
    try:
        topk = int(value)
    except (TypeError, ValueError):
        topk = 0
    if not 1 <= topk <= MAX_TOPK or isinstance(value, bool):
        raise InputError(f"request parameter topk is {value!r}, expected a whole number 1..{MAX_TOPK}", "e.g. topk=5")
    return topk


def result_arrays(task: str, result) -> dict[str, np.ndarray]:
    """One head result -> the pipeline model's output arrays, each with a leading batch dimension of 1."""
    if hasattr(result, "arrays"):  # the generic head: the network's own outputs for this image
        arrays = dict(result.arrays)
    elif task == "classification":
        arrays = {
            "class_ids": np.asarray(result.indices, np.int32),
            "scores": np.asarray(result.scores, np.float32),
            "labels": np.array([label.encode() for label in result.labels], dtype=np.object_),
        }
    elif task == "detection":
        arrays = {
            "boxes": np.asarray(result.boxes, np.float32).reshape(-1, 4),
            "scores": np.asarray(result.scores, np.float32),
            "class_ids": np.asarray(result.class_ids, np.int32),
            "labels": np.array([label.encode() for label in result.labels], dtype=np.object_),
        }
    else:
        mask = np.asarray(result.mask, np.uint16)
        present, counts = np.unique(mask, return_counts=True)
        order = np.argsort(-counts, kind="stable")  # largest area first
        labels = result.labels
        arrays = {
            "mask": mask,
            "class_ids": present[order].astype(np.int32),
            "fractions": (counts[order] / max(mask.size, 1)).astype(np.float32),
            "labels": np.array([(labels[i] if i < len(labels) else str(i)).encode() for i in present[order]], dtype=np.object_),
        }
    return {name: np.ascontiguousarray(array[np.newaxis]) for name, array in arrays.items()}


class TritonPythonModel:
    """Triton's entry points: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict) -> None:
        from trtpipe.pipeline.heads import create_head, head_name
        from trtpipe.spec import PreprocessSpec

        folder = Path(args["model_repository"]) / args["model_version"]
        self.settings = json.loads((folder / "pipeline.json").read_text())
        self.spec = PreprocessSpec.load(folder / "preprocess.json")
        labels = None
        if self.spec.labels:
            from trtpipe.labels import load_labels

            labels = load_labels(str(folder / self.spec.labels))
        fused = {"fused": self.spec.fused_postprocess} if self.spec.fused_postprocess else {}  # head in the network
        self._create_head = lambda topk: create_head(
            head_name(self.spec), labels=labels, topk=topk, input_size=(self.spec.height, self.spec.width), **fused
        )
        self.heads = {}  # top-k -> head; classification heads differ only in k
        self.input_dtype = np.dtype(self.settings["input_dtype"])

    def execute(self, requests: list) -> list:
        responses = [None] * len(requests)
        pending = []  # (request index, image, top-k)
        for index, request in enumerate(requests):
            try:
                image = decode_image(_one_image(pb_utils.get_input_tensor_by_name(request, "image").as_numpy()))
                pending.append((index, image, read_topk(request.parameters(), self.settings["default_topk"])))
            except (TrtpipeError, ValueError) as exc:
                responses[index] = _error_response(exc)
        if pending:
            try:
                from trtpipe.pipeline.preprocess import preprocess_with_meta

                images = [image for _, image, _ in pending]
                batch, metas = preprocess_with_meta(images, self.spec)
                outputs = self._infer(batch.astype(self.input_dtype, copy=False))
                for row, (index, image, topk) in enumerate(pending):
                    one = {name: value[row : row + 1] for name, value in outputs.items()}
                    result = self._head(topk)(one, metas[row : row + 1], [image])[0]
                    arrays = result_arrays(self.spec.task, result)
                    responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor(n, a) for n, a in arrays.items()])
            except Exception as exc:  # noqa: BLE001 - every request must get a response, whatever failed
                pb_utils.Logger.log_error(f"trtpipe pipeline: {type(exc).__name__}: {exc}")
                for index, _, _ in pending:
                    if responses[index] is None:
                        responses[index] = _error_response(exc)
        return responses

    def _head(self, topk: int):
        if topk not in self.heads:
            self.heads[topk] = self._create_head(topk)
        return self.heads[topk]

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Calls the network model in chunks of its max batch (its fixed batch, padded; or its ``batch_limit``
        when Triton does not batch it but its batch axis is dynamic)."""
        settings = self.settings
        chunk = settings["max_batch"] or settings["fixed_batch"] or settings.get("batch_limit")
        parts = []
        for start in range(0, len(batch), chunk):
            part = batch[start : start + chunk]
            count = len(part)
            if settings["fixed_batch"] and count < chunk:  # a fixed-batch network: pad, then drop the padding
                part = np.concatenate([part, np.zeros((chunk - count, *part.shape[1:]), part.dtype)])
            request = pb_utils.InferenceRequest(
                model_name=settings["network_model"],
                requested_output_names=settings["outputs"],
                inputs=[pb_utils.Tensor(settings["input"], np.ascontiguousarray(part))],
            )
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"network model {settings['network_model']!r} failed: {response.error().message()}")
            parts.append({name: pb_utils.get_output_tensor_by_name(response, name).as_numpy()[:count] for name in settings["outputs"]})
        # concatenate copies: the arrays must not point into the response's shared memory after it is freed
        return {name: np.concatenate([part[name] for part in parts]) for name in settings["outputs"]}

    def finalize(self) -> None:
        self.heads.clear()


def _one_image(data: np.ndarray) -> np.ndarray:
    if data.ndim != 2 or data.shape[0] != 1:
        raise InputError(
            f"input 'image' has shape {list(data.shape)}, expected [1, nbytes]: one encoded image per request",
            "send each image as its own request (samples/triton_client.py does)",
        )
    return data[0]


def _error_response(exc: Exception):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))
