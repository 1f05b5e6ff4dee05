"""Host head against fused post-processing: bytes copied device-to-host, host time per image, and parity.

    .venv/bin/python tests/perf/bench_fuse_postprocess.py [--models yolov8n,detr_resnet50,segformer_b0] [--images 16]
        [--repeat 20] [--work DIR]

For each model (zoo exports; random weights here, which every line says): the network ONNX and the same network
with ``fuse_postprocess`` appended (``nms="loop"``, what TensorRT-RTX builds; ``"onnx"`` is checked too for YOLO)
run in ONNX Runtime on the CPU on photo crops (scikit-image's, letterboxed/resized by the model's spec). Reported:

- **bytes D2H per image**: what an engine's outputs would copy back, from the outputs' shapes and dtypes (the same
  for TensorRT: output buffers are copied whole);
- **host post-processing per image** (median of ``--repeat`` timed calls, batch 1 and 8): the host head on the raw
  outputs against the fused head on the fused outputs (mapping boxes back, naming classes);
- **parity**: images whose fused results equal the host head's (same classes and order, boxes within 1e-4
  relative / 1e-3 px, equal masks and top-k), at ``--conf`` (random weights score below the default 0.25: give
  a lower one to compare boxes).

The network's own time is not in these figures (ONNX Runtime on the CPU is no stand-in for the GPU's): the fused
graph's cost on a GPU is measured only on a GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

BYTES = {"float32": 4, "float16": 2, "int32": 4, "int64": 8, "uint8": 1}


def photos(count: int) -> list[np.ndarray]:
    import skimage.data

    names = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field")
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        image = np.asarray(getattr(skimage.data, names[i % len(names)])())[:, :, :3][:, :, ::-1]
        h, w = image.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        images.append(np.ascontiguousarray(image[y : y + ch, x : x + cw]))
    return images


def median_ms(work, repeat: int) -> float:
    work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def same(a, b) -> bool:
    if hasattr(a, "boxes"):
        return (len(a) == len(b) and np.array_equal(a.class_ids, b.class_ids) and np.allclose(a.scores, b.scores, rtol=1e-5)
                and np.allclose(a.boxes, b.boxes, rtol=1e-4, atol=1e-3))
    if hasattr(a, "mask"):
        return np.array_equal(a.mask, b.mask)
    return a.indices == b.indices and np.allclose(a.scores, b.scores, rtol=1e-5)


def planted(rng, batch: int, objects: int = 20, anchors: int = 8400, classes: int = 80) -> np.ndarray:
    """YOLOv8-shaped raw outputs (N, 84, 8400) with ``objects`` clusters of overlapping boxes and scores above 0.25:
    what a trained detector gives on a busy photo, so that NMS has real work (hundreds of candidates)."""
    centres = rng.uniform(40, 600, (batch, objects, 2))
    owner = rng.integers(0, objects, (batch, anchors))
    cxcy = np.take_along_axis(centres, owner[..., None], axis=1) + rng.normal(0, 8, (batch, anchors, 2))
    wh = rng.uniform(30, 120, (batch, objects, 2))
    wh = np.take_along_axis(wh, owner[..., None], axis=1) * rng.uniform(0.8, 1.2, (batch, anchors, 2))
    scores = rng.uniform(0, 0.05, (batch, anchors, classes))
    cls = rng.integers(0, classes, (batch, objects))
    hit = rng.random((batch, anchors)) < 0.15  # 15% of the anchors see their object (about 1,260 of 8,400)
    best = np.take_along_axis(cls, owner, axis=1)
    b, a = np.nonzero(hit)
    scores[b, a, best[b, a]] = rng.uniform(0.25, 0.95, len(b))
    return np.concatenate([cxcy, wh, scores], axis=2).transpose(0, 2, 1).astype(np.float32)


def measure_planted(images: int, repeat: int) -> None:
    from onnx import TensorProto, helper

    from trtpipe.onnx.fuse_postprocess import fuse_postprocess
    from trtpipe.pipeline.heads import create_head
    from trtpipe.pipeline.preprocess import ResizeMeta
    from trtpipe.spec import PreprocessSpec

    graph = helper.make_graph([helper.make_node("Identity", ["raw"], ["output"])], "planted",
                              [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N", 84, 8400])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 84, 8400])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = PreprocessSpec(model="planted", height=640, width=640, task="detection", resize="letterbox")
    variants = {kind: fuse_postprocess(model, spec, nms=kind) for kind in ("loop", "onnx")}
    sessions = {kind: ort.InferenceSession(v.model.SerializeToString(), providers=["CPUExecutionProvider"])
                for kind, v in variants.items()}
    host_head = create_head("detection")
    meta = ResizeMeta(1080, 1920, 1 / 3, 1 / 3, 0.0, 140.0)
    rng = np.random.default_rng(1)
    print(f"\nplanted YOLOv8n-shaped outputs (N, 84, 8400): 20 objects, ~15% of anchors above 0.25 (not a network: the "
          f"head's work on a busy photo; {variants['loop'].spec.fused_postprocess})")
    for batch in (1, 8):
        raw = planted(rng, batch)
        fused = dict(zip([o.name for o in sessions["loop"].get_outputs()], sessions["loop"].run(None, {"raw": raw})))
        fused_head = create_head("fused_detection", fused=variants["loop"].spec.fused_postprocess)
        host_ms = median_ms(lambda: host_head({"output": raw}, [meta] * batch, [None] * batch), repeat) / batch
        fused_ms = median_ms(lambda: fused_head(fused, [meta] * batch, [None] * batch), repeat) / batch
        raw_bytes, fused_bytes = raw.nbytes / batch, sum(a.nbytes for a in fused.values()) / batch
        print(f"  batch {batch}: D2H {raw_bytes:,.0f} -> {fused_bytes:,.0f} bytes/image ({raw_bytes / fused_bytes:.1f}x "
              f"fewer); host post-processing {host_ms:.3f} -> {fused_ms:.3f} ms/image")
    agree = {kind: 0 for kind in sessions}
    candidates, kept = [], []
    for _ in range(images):
        raw = planted(rng, 1)
        host = host_head({"output": raw}, [meta], [None])
        candidates.append(int((raw[0, 4:].max(axis=0) >= 0.25).sum()))
        kept.append(len(host[0]))
        for kind, session in sessions.items():
            out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"raw": raw})))
            got = create_head("fused_detection", fused=variants[kind].spec.fused_postprocess)(out, [meta], [None])
            agree[kind] += same(host[0], got[0])
    print(f"  parity over {images} planted images: " + ", ".join(f"{k} NMS {n}/{images}" for k, n in agree.items())
          + f"; candidates above 0.25 per image: median {statistics.median(candidates):.0f}; host boxes kept: median {statistics.median(kept):.0f}")


def measure(name: str, work: Path, images: list, repeat: int, conf: float) -> None:
    from trtpipe.onnx.fuse_postprocess import fuse_postprocess
    from trtpipe.pipeline.heads import create_head, head_name
    from trtpipe.pipeline.preprocess import prepare_inputs
    from trtpipe.spec import PreprocessSpec, preprocess_path_for
    from trtpipe.zoo.export import export_model

    path = work / f"{name}.onnx"
    if not path.is_file():
        export_model(name, path, weights="random", dynamic_batch=True)
    spec = PreprocessSpec.load(preprocess_path_for(path))
    model = onnx.load(str(path))
    variants = {"loop": fuse_postprocess(model, spec, nms="loop", score_threshold=conf)}
    if spec.task == "detection" and spec.head is None and len(model.graph.output) == 1:
        variants["onnx"] = fuse_postprocess(model, spec, nms="onnx", score_threshold=conf)
    cpu = ["CPUExecutionProvider"]
    raw_session = ort.InferenceSession(str(path), providers=cpu)
    sessions = {kind: ort.InferenceSession(v.model.SerializeToString(), providers=cpu) for kind, v in variants.items()}
    size = (spec.height, spec.width)
    host_head = create_head(head_name(spec), topk=5, input_size=size, score_threshold=conf)
    fused_head = create_head(variants["loop"].spec.head or head_name(spec), topk=5, input_size=size,
                             fused=variants["loop"].spec.fused_postprocess)
    input_name = raw_session.get_inputs()[0].name
    weights = "RANDOM weights" if spec.random_weights else spec.weights
    print(f"\n{name} ({spec.task}, {spec.height}x{spec.width}, {weights}; {variants['loop'].spec.fused_postprocess})")
    for batch in (1, 8):
        batch_images = [images[i % len(images)] for i in range(batch)]
        tensor, metas = prepare_inputs(batch_images, spec, frames=False)
        tensor = tensor.astype(np.float32, copy=False)
        raw = dict(zip([o.name for o in raw_session.get_outputs()], raw_session.run(None, {input_name: tensor})))
        fused = {kind: dict(zip([o.name for o in s.get_outputs()], s.run(None, {input_name: tensor})))
                 for kind, s in sessions.items()}
        raw_bytes = sum(a.nbytes for a in raw.values()) / batch
        fused_bytes = sum(a.nbytes for a in fused["loop"].values()) / batch
        host_ms = median_ms(lambda: host_head(raw, metas, batch_images), repeat) / batch
        fused_ms = median_ms(lambda: fused_head(fused["loop"], metas, batch_images), repeat) / batch
        print(f"  batch {batch}: D2H {raw_bytes:,.0f} -> {fused_bytes:,.0f} bytes/image ({raw_bytes / fused_bytes:.1f}x "
              f"fewer); host post-processing {host_ms:.3f} -> {fused_ms:.3f} ms/image")
    agree = {kind: 0 for kind in sessions}
    counts = []
    for start in range(0, len(images), 8):
        chunk = images[start : start + 8]
        tensor, metas = prepare_inputs(chunk, spec, frames=False)
        tensor = tensor.astype(np.float32, copy=False)
        raw = dict(zip([o.name for o in raw_session.get_outputs()], raw_session.run(None, {input_name: tensor})))
        host = host_head(raw, metas, chunk)
        counts += [len(r) for r in host if hasattr(r, "boxes")]
        for kind, session in sessions.items():
            out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {input_name: tensor})))
            head = create_head(variants[kind].spec.head or head_name(spec), topk=5, input_size=size,
                               fused=variants[kind].spec.fused_postprocess)
            agree[kind] += sum(same(a, b) for a, b in zip(host, head(out, metas, chunk)))
    boxes = f"; host boxes per image: median {statistics.median(counts):.0f}, max {max(counts)}" if counts else ""
    print("  parity over " + f"{len(images)} photos: " + ", ".join(f"{kind} NMS {n}/{len(images)}" if "nms=" in variants[kind].spec.fused_postprocess
                                                                  else f"{n}/{len(images)}" for kind, n in agree.items()) + boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="yolov8n,detr_resnet50,segformer_b0")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--conf", type=float, default=0.25,
                        help="detection score threshold of both heads (default 0.25, the heads' default; random weights "
                             "score below it, so a lower one gives the comparison boxes)")
    parser.add_argument("--work", help="folder for the exports (reused between runs)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_fuse_postprocess."))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) before; {os.cpu_count()} cores; ONNX Runtime "
          f"{ort.__version__} on the CPU")
    images = photos(args.images)
    measure_planted(args.images, args.repeat)
    for name in args.models.split(","):
        measure(name.strip(), work, images, args.repeat, args.conf)
    print(f"\nload average {os.getloadavg()[0]:.2f} (1 min) after")


if __name__ == "__main__":
    main()
