"""FP16, INT8 and FP8 side by side: EfficientNet-Lite0 (real weights) builds by default and their fidelity on new photos.

    .venv/bin/python tests/perf/bench_fp8.py [--eval 240] [--work DIR]

In a work folder, as a user: ``make onnx calib-data MODEL=efficientnet_lite0`` (320 augmented scikit-image crops),
then ``make engine MODEL=efficientnet_lite0 PRECISION=p`` for fp16, int8 and fp8 (TensorRT-RTX, ahead of time on
the CPU; fp8 targets SM89/SM120, the RTX targets with FP8 tensor cores). Each engine's network ONNX then runs in
ONNX Runtime (CPU; FP16 storage kept; FP8 and INT8 Q/DQ dequantized, which checks the model, not its speed)
against FP32 on ``--eval`` crops that are not in calib_data (seed 1). Printed per precision: top-1 agreement (all,
confident), cosine, layers kept in floating point, engine size and the build step's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import MODEL, evaluate, make, overlap  # noqa: E402 - the same set-up and evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=int, default=240, help="held-out evaluation crops (default 240)")
    parser.add_argument("--work", help="work folder (reused: the export and calib_data)")
    parser.add_argument("--precisions", default="fp16,int8,fp8")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_fp8."))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) before; {os.cpu_count()} cores; work {work}")
    make(work, "onnx", "calib-data", MODEL=MODEL)
    rows, reference = [], None
    for precision in args.precisions.split(","):
        for stale in work.glob(f"engines/{MODEL}.{precision}.calib.json"):
            stale.unlink()  # calibrate and search, not reuse
        wall, cpu = make(work, "engine", MODEL=MODEL, PRECISION=precision, FORCE="1")
        engine = work / "engines" / f"{MODEL}_{precision}.engine"
        sidecar = json.loads(Path(f"{engine}.json").read_text())
        network = Path(sidecar["network_onnx_path"])
        result, reference = evaluate(work, network if network.is_absolute() else work / network, args.eval, reference)
        fidelity = sidecar.get("fidelity") or {}
        rows.append((precision, result, len(fidelity.get("kept", [])), fidelity.get("quantizable_layers"),
                     engine.stat().st_size, wall, cpu, sidecar["target"].get("compute_capabilities")))
    print(f"\n{MODEL} (real weights), {args.eval} crops not in calib_data ({overlap(work, args.eval)} shared files):")
    print(f"{'precision':<9} {'top-1':>6} {'conf.':>6} {'cosine':>8} {'kept':>7} {'engine MB':>9} {'build s':>8}  targets")
    for precision, r, kept, layers, size, wall, cpu, targets in rows:
        kept_text = f"{kept}/{layers}" if layers else "-"
        print(f"{precision:<9} {r.top1_agreement:6.3f} {r.top1_agreement_confident or float('nan'):6.3f} "
              f"{r.cosine_mean:8.5f} {kept_text:>7} {size / 1e6:9.1f} {wall:8.1f}  {','.join(targets or []) or 'flavour default'}")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) after")


if __name__ == "__main__":
    main()
