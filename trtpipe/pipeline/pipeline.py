"""``Pipeline``: images in, task results out: preprocess -> engine -> task head, with per-stage timings.

    with Pipeline.from_engine("engines/mobilenetv2_fp16.engine") as pipe:
        result = pipe(cv2.imread("cat.jpg"))      # one image -> one result
        results = pipe([img1, img2, img3])        # a list -> a list, batched within the profile
        print(pipe.timings.summary())

``backend="auto"`` (the default) runs an engine with TensorRT where this machine can, else its network
ONNX (the precision that was built) on ONNX Runtime; every result says which (``backend``, ``precision``,
``fallback``). Warm-up passes on dummy images run at open and before the first call of a new batch size,
untimed: every call of the user's is timed.

Batches larger than the engine's profile max are split into chunks of at most that size and run one
after another; the call's StageTimes are the sums over the chunks.

Threads: a Pipeline may be called from several threads. Preprocessing and post-processing run in
parallel; the engine runs ``contexts`` calls at once (an engine option, default 1; TensorRT: execution
contexts, each with its stream; ONNX Runtime: calls at once on its one session) and further callers wait.
For a folder, a video or a camera, ``pipe.stream(...)`` does the threading (see :mod:`trtpipe.pipeline.stream`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trtpipe.errors import InputError, option
from trtpipe.pipeline.heads import choose_head, create_head, head_options, run_head
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
        warmup: warm-up passes (preprocess, inference, head) on grey dummy images per batch size, run when
            the Pipeline opens (batch 1, or the engine's fixed batch) and before the first call with any other
            batch size; never timed and never one of the user's calls (trtexec also warms up apart).
            Defaults to 2: the first allocates (and captures a CUDA graph), the second runs the path later
            calls take. 0 turns warm-up off.
        labels: class names instead of the spec's: a bundled set ("imagenet1k", ...), a text file with one name per
            line, or a list of names. Defaults to the spec's label set.
        head_options: passed to the task head (``score_threshold``, ``iou_threshold``, ``max_detections``, ``layout``).

    An engine built with ``--fuse-preprocess`` (its spec's ``fused_preprocess`` set, its input uint8) preprocesses
    on the GPU: the Pipeline then feeds it the BGR frames as they are, and only maps its outputs back.

    Raises:
        TypeError: an option no head takes, listing the valid ones.
        InputError: a model with more than one input, or whose input does not fit the spec.
    """

    def __init__(self, engine: Engine, spec: PreprocessSpec, *, topk: int = 5, warmup: int = 2,
                 labels: str | Sequence[str] | None = None, **head_options: Any):
        _check_options(head_options, (), "Pipeline()")
        self.engine = engine
        self.spec = spec
        self.labels = _load_labels(spec.labels if labels is None else labels)
        if self.labels is None and getattr(engine, "class_names", ()):
            self.labels = list(engine.class_names)  # what the exporter stored in the ONNX's metadata
        fused = {"fused": spec.fused_postprocess} if spec.fused_postprocess else {}  # the head built into the network
        # the spec's head, else the one the output shapes fit (a YOLOX grid, ...; "generic" for anything else)
        self.head = create_head(choose_head(spec, getattr(engine, "outputs", None)), labels=self.labels, topk=topk,
                                input_size=(spec.height, spec.width), **fused, **head_options)
        self.timings = TimingRecorder()
        if len(engine.inputs) != 1:
            raise InputError(
                f"the model has {len(engine.inputs)} inputs {[i.name for i in engine.inputs]}; Pipeline feeds one image tensor",
                "use the Engine directly (trtpipe.runtime.load_engine) for multi-input models",
            )
        self._input = engine.inputs[0]
        self._dtype = np.dtype(self._input.dtype)
        # A fused-preprocessing network takes uint8 NHWC frames; run on ONNX Runtime from an unfused ONNX, the same
        # spec takes float tensors, and the host preprocesses as usual.
        self.feeds_frames = spec.fused_preprocess is not None and self._dtype == np.uint8
        shape = self._input.shape
        self.frame_size = tuple(shape[1:3]) if self.feeds_frames and min(shape[1:3]) > 0 else None
        # The frame sizes the network takes: its fixed size, or a dynamic engine's profile (on TensorRT, and on the
        # ONNX Runtime fallback that stands in for it); None where any size goes.
        limits = engine.input_limits.get(self._input.name) if self.feeds_frames else None
        if self.frame_size is not None:
            self.frame_range = (self.frame_size, self.frame_size)
        elif limits is not None:
            (_, low_h, low_w, _), (_, high_h, high_w, _) = limits
            self.frame_range = ((low_h, low_w), (high_h, high_w))
        else:
            self.frame_range = None
        self._closed = False
        self.warmup = warmup
        self._warm_batches: set[int] = set()  # batch sizes the engine has been warmed up with
        self._warm_lock = threading.Lock()
        fixed_batch = self._input.shape[0] if self._input.shape and self._input.shape[0] > 0 else 1
        self._warm_up(fixed_batch)

    @property
    def backend(self) -> str:
        """The engine's backend label ("tensorrt", "onnxruntime-cpu" ...)."""
        return self.engine.backend

    @property
    def precision(self) -> str:
        """What the network computes in: the engine's precision (sidecar), or the ONNX's own; "" when unknown."""
        precision = getattr(self.engine, "precision", None)
        if precision is None and getattr(self.engine, "sidecar", None) is not None:
            precision = self.engine.sidecar.precision
        return precision or ""

    @property
    def fallback(self) -> str | None:
        """Why ONNX Runtime runs instead of TensorRT (``backend="auto"`` on a machine that cannot run the engine)."""
        return getattr(self.engine, "fallback", None)

    def describe(self) -> str:
        """One line: what runs, in which precision, on what, and any fallback.

        e.g. "engines/m_fp16.engine: its fp16 network ONNX engines/m.fp16.onnx on onnxruntime-cpu
        (CPU fallback: no usable NVIDIA GPU (...))".
        """
        path = getattr(self.engine, "path", None)
        stands_in_for = getattr(self.engine, "stands_in_for", None)
        if stands_in_for is not None:
            what = f"{stands_in_for}: its {self.precision} network ONNX {path}"
        else:
            what = f"{path or type(self.engine).__name__} ({self.precision or 'precision unknown'})"
        line = f"{what} on {self.backend}"
        if getattr(self.engine, "fp16_storage", None) is False:
            line += " (fp16_storage=False: ONNX Runtime may compute its FP16 ops in FP32, hiding overflow)"
        if self.fallback:
            line += f" (CPU fallback: {self.fallback})"
        if self.spec.random_weights:
            line += "; RANDOM weights: outputs are meaningless"
        return line

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_engine(cls, path: str | Path, *, backend: str = "auto", spec: PreprocessSpec | None = None, **options: Any) -> "Pipeline":
        """Opens a TensorRT engine; the preprocess spec and labels come from its sidecar.

        Args:
            path: the ``.engine`` file, with its ``.engine.json`` sidecar beside it.
            backend: "auto" (TensorRT where this machine has a usable GPU and the TensorRT that built the
                engine, else ONNX Runtime on the engine's network ONNX, labelled as a CPU fallback in every
                result), "tensorrt" (fail instead of falling back) or "onnxruntime". Defaults to "auto".
            spec: overrides the sidecar's preprocess spec.
            options: Pipeline options (``topk``, ``warmup``, head thresholds) and engine options
                (both: ``contexts``; TensorRT: ``cuda_graph``, ``device`` ...; ONNX Runtime: ``providers``, ``threads``,
                ``fp16_storage``), mixed.

        Raises:
            TypeError: an option neither the Pipeline, its heads nor a backend takes, listing the valid ones.
            InputError: a missing engine or sidecar, a sidecar without a preprocess spec (pass ``spec=``).
            ConfigError: backend="tensorrt" on a machine without a GPU, or an unknown backend.
        """
        from trtpipe.runtime.compat import load_sidecar
        from trtpipe.runtime.loader import load_engine

        engine_options, pipe_options = _split_options(options, "Pipeline.from_engine()")
        if Path(path).suffix.lower() == ".onnx":
            raise InputError(f"{path} is an ONNX model; Pipeline.from_engine opens TensorRT engines",
                             f"use Pipeline.from_onnx({str(path)!r}), or build an engine: trtpipe build {path}")
        if spec is None:
            spec = load_sidecar(path).preprocess_spec
            if spec is None:
                raise InputError(
                    f"engine {path}: its sidecar has no preprocess spec",
                    f"pass {option('spec')}=PreprocessSpec(...), or rebuild the engine from an ONNX with a "
                    ".preprocess.json beside it",
                )
        return cls._open(load_engine(path, backend=backend, **engine_options), spec, pipe_options)

    @classmethod
    def from_onnx(cls, path: str | Path, *, backend: str = "auto", spec: PreprocessSpec | None = None, **options: Any) -> "Pipeline":
        """Opens an ONNX model on ONNX Runtime; the spec is ``<stem>.preprocess.json`` beside it unless given.

        Args:
            path: the ``.onnx`` file.
            backend: "auto" or "onnxruntime" (the same for an ONNX file). Defaults to "auto".
            spec: the preprocess spec. Defaults to ``<stem>.preprocess.json`` beside the ONNX.
            options: Pipeline options (``topk``, ``warmup`` ...) and ONNX Runtime options (``providers``, ``threads``,
                ``contexts``, ``fp16_storage``).

        Raises:
            TypeError: an unknown option, listing the valid ones.
            InputError: the ONNX or its preprocess spec is missing.
        """
        from trtpipe.runtime.loader import load_engine

        engine_options, pipe_options = _split_options(options, "Pipeline.from_onnx()")
        path = Path(path)
        if path.suffix.lower() in (".engine", ".plan", ".trt"):
            raise InputError(f"{path} is a TensorRT engine; Pipeline.from_onnx opens ONNX models",
                             f"use Pipeline.from_engine({str(path)!r}) (backend=\"auto\" falls back to its network ONNX)")
        if not path.is_file():
            raise InputError(
                f"ONNX model {path}: no such file" if not path.is_dir() else f"{path} is a directory, expected an .onnx file",
                "check the path; `trtpipe export NAME` writes engines/NAME.onnx with its preprocess spec",
            )
        if spec is None:
            spec_path = preprocess_path_for(path)
            if not spec_path.is_file():
                raise InputError(
                    f"ONNX model {path} has no preprocess spec {spec_path.name} beside it",
                    "export with trtpipe export (which writes it), write one with `trtpipe spec MODEL.onnx --preset "
                    f"NAME`, or pass {option('spec')}=trtpipe.presets.resolve_spec(path) (derived from the ONNX, its "
                    "assumptions recorded)",
                )
            spec = PreprocessSpec.load(spec_path)
        return cls._open(load_engine(path, backend=backend, **engine_options), spec, pipe_options)

    @classmethod
    def _open(cls, engine: Engine, spec: PreprocessSpec, options: dict[str, Any]) -> "Pipeline":
        try:
            return cls(engine, spec, **options)
        except BaseException:
            engine.close()  # a bad spec or label set must not leak the engine's GPU memory
            raise

    # -- warm-up -------------------------------------------------------------------------------

    def _warm_up(self, batch: int, *, engine: Engine | None = None, warmed: set | None = None) -> None:
        """Runs ``warmup`` untimed passes of ``batch`` grey images, once per input shape.

        A pass is the whole pipeline (preprocess, inference, head) so that first-call costs outside the
        network (OpenCV's and NumPy's lazy set-up: a few ms on a first resize here) are not timed either.
        The grey images are twice the input size, so the downscaling path camera frames take is the one warmed.
        ``engine`` and ``warmed`` warm another engine on this pipeline's spec (a stream's own session, which keeps
        its own set of warmed batch sizes). Default to this pipeline's engine and set.
        """
        if self.warmup <= 0:
            return
        with self._warm_lock:
            engine = engine if engine is not None else self.engine
            warmed = warmed if warmed is not None else self._warm_batches
            if batch in warmed:
                return
            size = (2 * self.spec.height, 2 * self.spec.width)
            if self.frame_range is not None:  # a size the fused network takes
                (low_h, low_w), (high_h, high_w) = self.frame_range
                size = (min(max(size[0], low_h), high_h), min(max(size[1], low_w), high_w))
            grey = np.full((*size, 3), self.spec.pad_value, np.uint8)
            images = [grey] * batch
            for _ in range(self.warmup):
                inputs, metas = prepare_inputs(images, self.spec, frames=self.feeds_frames, frame_range=self.frame_range)
                outputs, _ = engine.infer_timed({self._input.name: inputs.astype(self._dtype, copy=False)})
                self.head(outputs, metas, images)
            warmed.add(batch)

    def _chunk_sizes(self, count: int) -> list[int]:
        limit = self.engine.max_batch or count
        return [min(limit, count - start) for start in range(0, count, limit)]

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
        if self.warmup > 0 and len(images) > 0:
            for size in set(self._chunk_sizes(len(images))):  # new shapes only; before the clock starts
                self._warm_up(size)
        start = time.perf_counter()
        batch, metas = prepare_inputs(images, self.spec, frames=self.feeds_frames, frame_range=self.frame_range)
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
        return [dataclasses.replace(r, times=times, **self.run_info) for r in results], times

    @property
    def run_info(self) -> dict[str, Any]:
        """What every result says about how it was made: backend, precision, fallback."""
        return {"backend": self.engine.backend, "precision": self.precision, "fallback": self.fallback}

    def _infer(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], StageTimes]:
        """Runs ``batch`` in chunks of at most the engine's max batch; sums the device stage times."""
        sizes = self._chunk_sizes(len(batch))
        if len(sizes) == 1:
            return self.engine.infer_timed({self._input.name: batch})
        starts = np.cumsum([0, *sizes[:-1]])
        chunks = [self.engine.infer_timed({self._input.name: batch[s : s + n]}) for s, n in zip(starts, sizes)]
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
            workers: decode/preprocess/post-process threads. Defaults to the split of the usable cores that
                :func:`~trtpipe.pipeline.stream.plan_threads` chooses (all of them for a GPU engine; on ONNX
                Runtime's CPU provider half go to the engine's threads, on a second session of the stream's own).
            options: see :class:`~trtpipe.pipeline.stream.Stream` (``threads``, ``inference_threads``, ``max_frames``,
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


def _pipeline_options() -> tuple[str, ...]:
    """Keyword options of the Pipeline and its heads (from their signatures)."""
    own = inspect.signature(Pipeline.__init__).parameters.values()
    mine = {p.name for p in own if p.kind is p.KEYWORD_ONLY}
    return tuple(sorted(mine | set(head_options())))


def _check_options(options: dict[str, Any], also_valid: tuple[str, ...], what: str) -> None:
    """TypeError for a head option no head takes (Pipeline(...)); valid names are listed."""
    valid = sorted(set(_pipeline_options()) | set(also_valid))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        close = [m for name in unknown for m in difflib.get_close_matches(name, valid, n=1)]
        suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
        raise TypeError(f"{what} got unexpected keyword argument(s) {', '.join(unknown)}{suggestion}; valid: {', '.join(valid)}")


def _split_options(options: dict[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(engine options, Pipeline/head options); TypeError for an option none of them takes."""
    from trtpipe.runtime.loader import engine_options

    engine_valid = (*engine_options("tensorrt"), *engine_options("onnxruntime"))
    _check_options(options, engine_valid, what)
    pipe_valid = set(_pipeline_options())
    pipe = {k: v for k, v in options.items() if k in pipe_valid}
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
