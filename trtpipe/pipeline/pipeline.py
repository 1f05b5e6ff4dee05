"""``Pipeline``: images in, task results out: preprocess -> engine -> task head, with per-stage timings.

    with Pipeline.from_engine("engines/mobilenetv2_fp16.engine") as pipe:
        result = pipe(cv2.imread("cat.jpg"))      # one image -> one result
        results = pipe([img1, img2, img3])        # a list -> a list, batched within the profile
        print(pipe.timings.summary())

Batches larger than the engine's profile max are split into chunks of at most that size and run one
after another; the call's StageTimes are the sums over the chunks.

Threads: a Pipeline may be called from several threads. Preprocessing and post-processing run in
parallel; engine calls run on the engine's execution contexts (TensorRT: ``contexts=N`` runs N at once,
more callers wait for a free one; ONNX Runtime: its session is thread-safe). For a folder, a video or a
camera, ``pipe.stream(...)`` does the threading (see :mod:`trtpipe.pipeline.stream`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trtpipe.errors import InputError
from trtpipe.pipeline.heads import create_head, head_name, run_head
from trtpipe.pipeline.preprocess import prepare_inputs
from trtpipe.pipeline.timing import TimingRecorder
from trtpipe.runtime.base import ClosedError, Engine, StageTimes
from trtpipe.spec import PreprocessSpec, preprocess_path_for


class Pipeline:
    """Runs a model end to end on BGR images (as cv2 gives them).

    Args:
        engine: an open Engine (the Pipeline closes it).
        spec: how images become the network input; its head (else its task's default head) decodes the
            outputs, its labels name classes.
        topk: classes kept per image (classification). Defaults to 5.
        warmup: calls left out of ``timings``. Defaults to 1.
        labels: class names instead of the spec's: a bundled set ("imagenet1k", ...), a text file with one name per
            line, or a list of names. Defaults to the spec's label set.
        head_options: passed to the task head (score/IoU thresholds, layout ...).

    An engine built with ``--fuse-preprocess`` (its spec's ``fused_preprocess`` set, its input uint8) preprocesses
    on the GPU: the Pipeline then feeds it the BGR frames as they are, and only maps its outputs back.
    """

    def __init__(
        self,
        engine: Engine,
        spec: PreprocessSpec,
        *,
        topk: int = 5,
        warmup: int = 1,
        labels: str | Sequence[str] | None = None,
        **head_options: Any,
    ):
        self.engine = engine
        self.spec = spec
        self.labels = _load_labels(spec.labels if labels is None else labels)
        self.head = create_head(head_name(spec), labels=self.labels, topk=topk, input_size=(spec.height, spec.width), **head_options)
        self.timings = TimingRecorder(warmup=warmup)
        self._input = engine.inputs[0]
        if len(engine.inputs) != 1:
            raise InputError(
                f"the model has {len(engine.inputs)} inputs {[i.name for i in engine.inputs]}; Pipeline feeds one image tensor",
                "use the Engine directly (trtpipe.runtime.load_engine) for multi-input models",
            )
        self._dtype = np.dtype(self._input.dtype)
        # A fused-preprocessing network takes uint8 NHWC frames; run on ONNX Runtime from the unfused ONNX, the same
        # spec takes float tensors, and the host preprocesses as usual.
        self.feeds_frames = spec.fused_preprocess is not None and self._dtype == np.uint8
        shape = self._input.shape
        self.frame_size = tuple(shape[1:3]) if self.feeds_frames and min(shape[1:3]) > 0 else None
        self._closed = False

    @property
    def backend(self) -> str:
        return self.engine.backend

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_engine(cls, path: str | Path, *, backend: str | None = None, spec: PreprocessSpec | None = None, **options: Any) -> "Pipeline":
        """Opens a TensorRT engine; the preprocess spec and labels come from its sidecar.

        ``backend="onnxruntime"`` runs the ONNX the engine was built from instead (CPU fallback).
        Engine options (``cuda_graph``, ``device``) and Pipeline options (``topk`` ...) may be mixed.
        """
        from trtpipe.runtime.compat import load_sidecar
        from trtpipe.runtime.loader import load_engine

        if spec is None:
            spec = load_sidecar(path).preprocess_spec
            if spec is None:
                raise InputError(
                    f"engine {path}: its sidecar has no preprocess spec",
                    "pass spec=PreprocessSpec(...) or rebuild the engine from an ONNX with a .preprocess.json beside it",
                )
        engine_options, pipe_options = _split_options(options)
        return cls._open(load_engine(path, backend=backend or "tensorrt", **engine_options), spec, pipe_options)

    @classmethod
    def from_onnx(cls, path: str | Path, *, backend: str = "onnxruntime", spec: PreprocessSpec | None = None, **options: Any) -> "Pipeline":
        """Opens an ONNX model on ONNX Runtime; the spec is ``<stem>.preprocess.json`` beside it unless given."""
        from trtpipe.runtime.loader import load_engine

        if spec is None:
            spec_path = preprocess_path_for(path)
            if not spec_path.is_file():
                raise InputError(
                    f"ONNX model {path} has no preprocess spec {spec_path.name} beside it",
                    "export with trtpipe export (which writes it), write one with PreprocessSpec(...).save(), "
                    "or pass spec=PreprocessSpec(...)",
                )
            spec = PreprocessSpec.load(spec_path)
        engine_options, pipe_options = _split_options(options)
        return cls._open(load_engine(path, backend=backend, **engine_options), spec, pipe_options)

    @classmethod
    def _open(cls, engine: Engine, spec: PreprocessSpec, options: dict[str, Any]) -> "Pipeline":
        try:
            return cls(engine, spec, **options)
        except BaseException:
            engine.close()  # a bad spec or label set must not leak the engine's GPU memory
            raise

    # -- running -------------------------------------------------------------------------------

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]):
        """One image -> one result; a list of images -> a list of results (each carrying backend and this call's times)."""
        single = isinstance(images, np.ndarray) or images is None
        results, times = self.run([images] if single else list(images))
        return results[0] if single else results

    def run(self, images: Sequence[np.ndarray]) -> tuple[list, StageTimes]:
        """Runs a list of images; returns the results and the call's StageTimes."""
        if self._closed:
            raise ClosedError("Pipeline")
        start = time.perf_counter()
        batch, metas = prepare_inputs(images, self.spec, frames=self.feeds_frames, frame_size=self.frame_size)
        if batch.dtype != self._dtype:
            batch = batch.astype(self._dtype)
        preprocessed = time.perf_counter()
        outputs, engine_times = self._infer(batch)
        inferred = time.perf_counter()
        results = run_head(self.head, outputs, metas, images)
        end = time.perf_counter()
        times = dataclasses.replace(
            engine_times,
            preprocess=(preprocessed - start) * 1e3,
            postprocess=(end - inferred) * 1e3,
            end_to_end=(end - start) * 1e3,
        )
        self.timings.record(times)
        backend = self.engine.backend
        return [dataclasses.replace(r, backend=backend, times=times) for r in results], times

    def _infer(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], StageTimes]:
        """Runs ``batch`` in chunks of at most the engine's max batch; sums the device stage times."""
        limit = self.engine.max_batch or len(batch)
        if len(batch) <= limit:
            return self.engine.infer_timed({self._input.name: batch})
        chunks = [self.engine.infer_timed({self._input.name: batch[i : i + limit]}) for i in range(0, len(batch), limit)]
        outputs = {name: np.concatenate([c[0][name] for c in chunks]) for name in chunks[0][0]}
        summed = {
            f.name: sum(getattr(c[1], f.name) for c in chunks) if getattr(chunks[0][1], f.name) is not None else None
            for f in dataclasses.fields(StageTimes)
        }
        return outputs, StageTimes(**summed)

    def stream(self, source: Any, *, batch_size: int | None = None, workers: int | None = None, **options: Any):
        """Runs ``source`` through the Pipeline with every stage busy at once; results come back in input order.

        ``source`` is a folder, image files, a video file, a camera index, a stream URL, or an iterable of BGR
        images / paths (see :func:`trtpipe.pipeline.sources.open_source`). Decoding and preprocessing run on
        ``workers`` threads, batches of up to ``batch_size`` run on the engine's execution contexts, post-processing
        runs on the workers. Iterate the returned :class:`~trtpipe.pipeline.stream.Stream` (and close it, or use
        ``with``); each item is a :class:`~trtpipe.pipeline.stream.StreamResult`.

            with pipe.stream("photos/", batch_size=8, workers=4) as results:
                for item in results:
                    print(item.source, item.result.labels[0] if item.ok else item.error)

        Args:
            batch_size: images per engine call. Defaults to the engine's profile max (8 when it has none), at most 32.
            workers: decode/preprocess/post-process threads. Defaults to the number of CPU cores.
            options: see :class:`~trtpipe.pipeline.stream.Stream` (``inference_threads``, ``max_frames``,
                ``keep_images``, ``in_flight``).
        """
        from trtpipe.pipeline.stream import Stream

        if self._closed:
            raise ClosedError("Pipeline")
        return Stream(self, source, batch_size=batch_size, workers=workers, **options)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the engine; later calls raise ClosedError. Calling it twice is harmless."""
        if not self._closed:
            self._closed = True
            self.engine.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_PIPELINE_OPTIONS = ("topk", "warmup", "labels", "score_threshold", "iou_threshold", "max_detections", "layout")


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    pipe = {k: v for k, v in options.items() if k in _PIPELINE_OPTIONS}
    return {k: v for k, v in options.items() if k not in pipe}, pipe


def _load_labels(labels: str | Path | Sequence[str] | None) -> list[str] | None:
    """A label set's name or file -> its class names; a list of names is taken as it is."""
    if labels is None or (isinstance(labels, str) and not labels):
        return None
    if not isinstance(labels, (str, Path)):
        names = list(labels)
        if not all(isinstance(n, str) for n in names):
            raise InputError(
                f"labels is a list of {sorted({type(n).__name__ for n in names})}, expected class names (str)",
                "pass labels=['cat', 'dog', ...], a label set name such as 'imagenet1k', or a text file path",
            )
        return names
    from trtpipe.labels import load_labels  # lazily: only classification/detection with names need it

    return load_labels(str(labels))
