"""Preprocessing 1080p -> 3x224x224 float32: trtpipe (both resize modes) vs torchvision's PIL pipeline, one run.

    .venv/bin/python tests/perf/bench_preprocess.py [--repeat 200]
Prints medians, the speed-up (target >= 25x for the default antialiased mode) and parity with torchvision.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    import skimage.data
    import torchvision.transforms as T
    from PIL import Image

    from trtpipe.pipeline.preprocess import preprocess_batch
    from trtpipe.spec import PreprocessSpec

    frame = cv2.resize(skimage.data.astronaut()[:, :, ::-1], (1920, 1080), interpolation=cv2.INTER_CUBIC)
    frame = np.ascontiguousarray(frame)
    pil = Image.fromarray(frame[:, :, ::-1].copy())
    torchvision_pipeline = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    spec = PreprocessSpec(model="bench", height=224, width=224, interpolation="bilinear")
    fast = spec.replace(antialias=False)
    # Interleaved rounds so that load from other processes hits every contender alike.
    # Two torchvision baselines: from a PIL image already in RGB (the strictest comparison), and from the
    # BGR frame a camera or cv2.imread gives, converted the efficient way (cvtColor + fromarray).
    from_frame = lambda: torchvision_pipeline(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))  # noqa: E731
    rounds = {"torchvision PIL": [], "torchvision PIL from BGR frame": [], "trtpipe antialias (default)": [],
              "trtpipe fast": [], "cv2.dnn.blobFromImage": []}
    for _ in range(5):
        rounds["torchvision PIL"].append(median_ms(lambda: torchvision_pipeline(pil), max(4, args.repeat // 10)))
        rounds["torchvision PIL from BGR frame"].append(median_ms(from_frame, max(4, args.repeat // 10)))
        rounds["trtpipe antialias (default)"].append(median_ms(lambda: preprocess_batch([frame], spec), args.repeat))
        rounds["trtpipe fast"].append(median_ms(lambda: preprocess_batch([frame], fast), args.repeat))
        rounds["cv2.dnn.blobFromImage"].append(
            median_ms(lambda: cv2.dnn.blobFromImage(frame, 1 / 255, (224, 224), swapRB=True, crop=True), args.repeat)
        )
    reference = torchvision_pipeline(pil).numpy()
    std = np.array((0.229, 0.224, 0.225), np.float32)[:, None, None]
    base = float(np.median(rounds["torchvision PIL"]))
    base_frame = float(np.median(rounds["torchvision PIL from BGR frame"]))
    print("preprocess 1920x1080 -> 3x224x224 float32 (median of 5 interleaved rounds); speed-ups against "
          "torchvision from a PIL image / from the BGR frame")
    for name, values in rounds.items():
        ms = float(np.median(values))
        line = f"  {name:<31} {ms:8.3f} ms   {base / ms:6.1f}x / {base_frame / ms:6.1f}x"
        if name.startswith("trtpipe"):
            out = preprocess_batch([frame], spec if "default" in name else fast)[0]
            line += f"   mean |diff| vs torchvision {np.abs((out - reference) * std).mean() * 255:.2f}/255"
        print(line)


if __name__ == "__main__":
    main()
