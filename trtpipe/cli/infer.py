"""``trtpipe infer MODEL SOURCE...``: run an engine or ONNX model on images, folders, a video or a camera.

Images stream through ``Pipeline.stream`` (decode and preprocess on --workers threads, batches of --batch on the
engine); one table row per result (header first), the stage times, and one summary line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

VERB = "infer"
HELP = "run an engine (.engine) or ONNX model on images, folders, a video file or a camera and print its results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a TensorRT engine (with its .json sidecar) or an .onnx (its preprocessing: <stem>.preprocess.json, "
                        "the flags below, or derived)")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="image files, folders of images, a video file, a camera index (0) or a stream URL (rtsp://...)")
    parser.add_argument("--topk", type=int, default=5,
                        help="classes per image (classification), detections printed per image, classes by area "
                             "(segmentation) (default: 5)")
    parser.add_argument("--conf", type=float, metavar="SCORE", help="detection: minimum score kept (default: the head's, 0.25)")
    parser.add_argument("--iou", type=float, metavar="IOU", help="detection: NMS IoU threshold (default: the head's, 0.45)")
    parser.add_argument("--labels", metavar="FILE|SET", help="class names: a text file with one name per line, or a bundled "
                                                             "set (default: the model's)")
    parser.add_argument("--save", metavar="DIR", help="write annotated images (classification, detection) or colour masks "
                                                      "(segmentation) to DIR; a video source gives one annotated video")
    parser.add_argument(
        "--backend",
        choices=("auto", "tensorrt", "onnxruntime"),
        default="auto",
        help="auto (default): TensorRT for engines where a usable GPU and TensorRT are, else ONNX Runtime on the "
        "engine's network ONNX (same precision; the first and last lines say CPU fallback); onnxruntime for .onnx files",
    )
    parser.add_argument("--batch", type=int, metavar="N", help="images per engine call, at most the profile max "
                                                               "(default: the profile max, 8 without one)")
    parser.add_argument("--workers", type=int, metavar="W",
                        help="decode/preprocess threads (default: every usable core for a GPU engine; on ONNX Runtime's "
                             "CPU provider the cores left after --threads)")
    parser.add_argument("--threads", type=int, metavar="T",
                        help="ONNX Runtime CPU: the engine's intra-op threads while streaming (default: half the usable "
                             "cores; the summary line says what was chosen)")
    parser.add_argument("--useProfile", dest="use_profile", type=int, metavar="N",
                        help="TensorRT: run on optimization profile N only (default: the profile that holds the batch)")
    parser.add_argument("--refit-from", dest="refit_weights", metavar="MODEL.onnx",
                        help="TensorRT: refit the engine's weights from this ONNX at load (a --stripWeights or "
                             "--refit engine)")
    parser.add_argument("--infStreams", dest="infer_streams", type=int, default=1, metavar="N",
                        help="N batches in the engine at once: TensorRT execution contexts (as trtexec's --infStreams), "
                             "or calls at once on ONNX Runtime's session (default 1)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N images or frames (a camera never ends)")
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")
    from trtpipe.cli.common import add_spec_arguments

    add_spec_arguments(parser, labels=False)  # --labels above means the same
    parser.add_argument("--force", action="store_true", help="let --save replace files in DIR (--json, a file you name, is replaced as other verbs' "
                             "outputs are)")


def run(args: argparse.Namespace) -> int:
    from trtpipe.errors import ConfigError, InputError
    from trtpipe.io import check_outputs

    check_outputs(files={"--json": args.json}, dirs={"--save": args.save})
    from trtpipe.pipeline.sources import open_source

    for name in ("topk", "batch", "workers", "threads", "max_frames", "infer_streams"):
        value = getattr(args, name)
        if value is not None and value < 1:
            option = "--infStreams" if name == "infer_streams" else f"--{name.replace('_', '-')}"
            raise ConfigError(f"{option} is {value}, expected at least 1", f"give {option} 1 or more")
    sources = [_source_argument(s) for s in args.sources]
    if any(isinstance(s, int) for s in sources) and len(sources) > 1:
        raise InputError("a camera index must be the only SOURCE", "run one infer per camera")
    source = open_source(sources[0] if len(sources) == 1 else sources, max_frames=args.max_frames)
    try:
        return _run(args, source)
    finally:
        source.close()  # a camera opened above is released whatever happens (the stream closes it too)


def _run(args: argparse.Namespace, source) -> int:
    from trtpipe.errors import InputError
    from trtpipe.pipeline.pipeline import Pipeline
    from trtpipe.runtime.loader import default_backend

    saver = _Saver(Path(args.save), source, args.force) if args.save else None
    is_onnx = default_backend(args.model) == "onnxruntime"
    options = {"topk": args.topk, "contexts": args.infer_streams}
    if args.use_profile is not None:
        options["profile"] = args.use_profile
    if args.refit_weights:
        options["weights"] = args.refit_weights
    for option, value in (("score_threshold", args.conf), ("iou_threshold", args.iou), ("labels", args.labels)):
        if value is not None:
            options[option] = value
    from trtpipe.cli.common import spec_from_args

    options["spec"] = spec_from_args(args, args.model)  # None: the engine's sidecar says it
    opener = Pipeline.from_onnx if is_onnx else Pipeline.from_engine
    records, counts, first_error = [], {"ok": 0, "errors": 0}, None
    started = time.perf_counter()
    interrupted = False
    with opener(args.model, backend=args.backend, **options) as pipe:
        print(f"running {pipe.describe()}")
        table = _Table(pipe.head.task or "generic", args.topk)  # the head's: a generic head shows arrays
        stream = pipe.stream(source, batch_size=args.batch, workers=args.workers, threads=args.threads,
                             keep_images=saver is not None)
        try:
            with stream:
                print(table.header())
                for item in stream:
                    counts["ok" if item.ok else "errors"] += 1
                    first_error = first_error or item.error
                    print(table.rows(item))
                    if saver is not None and item.ok:
                        saver.write(item)
                    if args.json:
                        records.append(_record(item))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if saver is not None:
                saver.close(keep=not interrupted)
        stats = stream.stats
        stages = _stage_table(stats)
        if stages:
            print(stages)
        if pipe.spec.random_weights:
            print("note: this model has RANDOM weights; its labels are meaningless")
        seconds = time.perf_counter() - started
        if args.json and not interrupted:
            from trtpipe.io import atomic_write_text

            payload = {"model": str(args.model), **pipe.run_info, "source": stream.source, "results": records}
            atomic_write_text(Path(args.json), json.dumps(payload, indent=2) + "\n")
        print(_summary(args, stream, stats, _ran_on(pipe), counts, seconds, saver, interrupted))
    if interrupted:
        return 130
    if counts["errors"] and not counts["ok"]:
        # The first error says what went wrong (an unreadable file, a frame size the network does not take ...).
        raise InputError(f"none of the {_count(counts['errors'], 'image')} from {stream.source} gave a result (each "
                         f"error is in the table above; the first: {first_error.message})", first_error.hint)
    return 0


def _source_argument(text: str):
    """A SOURCE as given: digits that are not a file name are a camera index."""
    return int(text) if text.isdigit() and not Path(text).exists() else text


def _ran_on(pipe) -> str:
    """ "tensorrt fp16", or "onnxruntime-cpu int8 (CPU fallback)": what ran, as every result says it."""
    label = " ".join(part for part in (pipe.backend, pipe.precision) if part)
    return f"{label} (CPU fallback)" if pipe.fallback else label


def _record(item) -> dict:
    record = {"index": item.index, "source": item.source}
    if not item.ok:
        return {**record, "error": str(item.error)}
    times = item.times
    return {**record, **item.result.to_dict(), "batch": times.batch,
            "times_ms": {k: round(v, 3) for k, v in (("read", times.read), ("preprocess", times.preprocess),
                         ("infer", times.infer), ("postprocess", times.postprocess), ("latency", times.latency)) if v is not None}}


class _Table:
    """One row per result (several per image for top-k), under one header row."""

    def __init__(self, task: str, topk: int):
        self.task = task
        self.topk = topk
        self.columns = {
            "classification": ("class", "score", "label"),
            "detection": ("class", "score", "label", "box x1,y1,x2,y2"),
            "segmentation": ("class", "area", "label"),
            "generic": ("output", "shape", "dtype", "min / max / mean / std"),
        }[task]

    def header(self) -> str:
        return f"{'#':>5}  {'source':<32} {'ms':>8}  " + self._cells(self.columns)

    def _cells(self, cells) -> str:
        widths = (6, 7, 24, 0) if self.task != "generic" else (24, 16, 8, 0)
        right = 2 if self.task != "generic" else 0  # numbers right-aligned; generic rows lead with a name
        return "  ".join(f"{c:>{w}}" if i < right else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    def rows(self, item) -> str:
        source = item.source if len(item.source) <= 32 else "..." + item.source[-29:]
        lead = f"{item.index:>5}  {source:<32}"
        if not item.ok:
            return f"{lead} {'-':>8}  error: {item.error}"
        entries = self._entries(item.result)
        first = f"{lead} {item.times.latency:>8.1f}  "
        if not entries:
            return first + ("no detections" if self.task == "detection" else "-")
        blank = " " * (len(first))
        lines = [(first if i == 0 else blank) + self._cells(e) for i, e in enumerate(entries)]
        return "\n".join(lines)

    def _entries(self, result) -> list[tuple[str, ...]]:
        if self.task == "generic":
            return [(o.name, "x".join(str(d) for d in o.shape) or "scalar", o.dtype,
                     "empty" if o.min is None else f"{o.min:.4g} / {o.max:.4g} / {o.mean:.4g} / {o.std:.4g}")
                    for o in result.statistics]
        if self.task == "classification":
            return [(str(i), f"{s:.4f}", l) for i, l, s in zip(result.indices, result.labels, result.scores)]
        if self.task == "detection":
            shown = [(str(int(c)), f"{s:.3f}", l, ",".join(f"{v:.0f}" for v in b))
                     for b, s, c, l in list(zip(result.boxes, result.scores, result.class_ids, result.labels))[: self.topk]]
            if len(result) > self.topk:
                shown.append(("", "", f"... {len(result) - self.topk} more", ""))
            return shown
        classes = sorted(result.to_dict()["classes"], key=lambda c: -c["fraction"])[: self.topk]  # ranked by area
        return [(str(c["class_id"]), f"{c['fraction'] * 100:.1f}%", c["label"]) for c in classes]


def _stage_table(stats) -> str:
    rows = [("read", stats.read_ms, "per image"), ("preprocess", stats.preprocess_ms, "per image"),
            ("infer", stats.infer_ms, "per batch"), ("postprocess", stats.postprocess_ms, "per batch"),
            ("latency", stats.latency_ms, "per image, read to result")]
    lines = [f"{'stage':<12} {'mean ms':>9}  per"]
    lines += [f"{name:<12} {value:>9.2f}  {per}" for name, value, per in rows if value is not None]
    return "\n".join(lines) if len(lines) > 1 else ""  # nothing finished: no table


_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # annotated images keep these formats


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _summary(args, stream, stats, backend: str, counts: dict, seconds: float, saver, interrupted: bool) -> str:
    done = counts["ok"]
    rate = f"{done / stats.seconds:,.1f} images/s" if stats.seconds > 0 and done else "no images/s"
    parts = [
        f"infer: {_count(done, 'result')}, {_count(counts['errors'], 'error')} from {stream.source} in {seconds:.1f} s "
        f"({rate} streaming)",
        f"{backend}, batch up to {stream.batch_size}, {stream.split.text()}",
    ]
    if saver is not None:
        parts.append(f"saved {saver.summary()}")
    if args.json:
        parts.append(f"results {'NOT written (interrupted)' if interrupted else 'written to ' + args.json}")
    return "; ".join(parts) + ("; INTERRUPTED" if interrupted else "")


class _Saver:
    """Writes annotated images (one file per image) or, for a video or camera, one annotated video."""

    def __init__(self, folder: Path, source, force: bool):
        from trtpipe.io import ensure_writable_dir

        self.folder = ensure_writable_dir(folder)  # before the work: a bad --save fails at once
        self.force = force
        self.video = source.kind in ("video", "camera")
        self.written = 0
        self._names: set[str] = set()
        self._writer = None
        self._video_tmp: Path | None = None
        if self.video:
            stem = "camera" + source.description.split()[-1] if source.kind == "camera" else Path(source.description.split(" ", 1)[1]).stem
            self.video_path = folder / f"{stem}_annotated.mp4"
            self._check(self.video_path)
        elif not force and any(self.folder.iterdir()):
            from trtpipe.errors import InputError

            # Refused before any work: finding a clash at the 100th image would leave 99 written.
            raise InputError(f"--save {folder} holds files already; infer writes annotated images into an empty or new "
                             "folder, so that nothing of yours is replaced", "choose another --save folder, or add --force")

    def _check(self, path: Path) -> None:
        from trtpipe.errors import InputError

        if path.exists() and not self.force:
            raise InputError(f"{path} exists; infer --save does not overwrite it", "choose another --save folder, or add --force")

    def write(self, item) -> None:
        import cv2

        from trtpipe.pipeline.annotate import annotate

        picture = annotate(item.image, item.result)
        if self.video:
            self._write_frame(picture)
            return
        is_mask = hasattr(item.result, "mask")
        source = Path(item.source) if item.source != "image" else Path("image.jpg")
        # The source's own name and format, as Ultralytics saves (x.png and x.jpg stay apart); masks as PNG.
        suffix = source.suffix.lower() if source.suffix.lower() in _WRITABLE else ".jpg"
        name = f"{source.stem}_mask.png" if is_mask else f"{source.stem}{suffix}"
        if name in self._names:  # the same file name from two folders
            name = f"{Path(name).stem}_{item.index}{Path(name).suffix}"
        self._names.add(name)
        path = self.folder / name
        self._check(path)
        ok, encoded = cv2.imencode(path.suffix, picture)
        from trtpipe.io import atomic_write_bytes

        atomic_write_bytes(path, encoded.tobytes())
        self.written += 1

    def _write_frame(self, picture) -> None:
        import cv2

        if self._writer is None:
            self._video_tmp = self.video_path.with_name(f".{self.video_path.stem}.{os.getpid()}.partial.mp4")
            height, width = picture.shape[:2]
            self._writer = cv2.VideoWriter(str(self._video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
        self._writer.write(picture)
        self.written += 1

    def close(self, keep: bool) -> None:
        """Finishes the video; an interrupted one is kept too (its frames are complete), others are removed."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if keep or self.written:
                os.replace(self._video_tmp, self.video_path)
            else:
                self._video_tmp.unlink(missing_ok=True)

    def summary(self) -> str:
        if self.video:
            return f"{_count(self.written, 'annotated frame')} to {self.video_path}" if self.written else "nothing (no frames)"
        return f"{_count(self.written, 'file')} to {self.folder}/"
