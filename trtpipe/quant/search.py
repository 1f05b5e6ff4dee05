"""INT8 that meets a fidelity target: keep layers in floating point, most harmful first, until it does.

``prepare_int8`` holds back every fourth calibration image (:data:`HELD_BACK`); those images are never used for
ranges, bias correction or the sensitivity ranking. On them the Q/DQ ONNX runs in ONNX Runtime (CPU, FP16
storage kept, in a child process) against the FP32 model, and :func:`search_kept_layers`:

1. measures the Q/DQ ONNX with every layer in INT8 (except those ``--keep-fp`` / ``--auto-keep`` name);
2. while the figures are below the target, keeps the next layer of the sensitivity ranking in floating point
   (``sensitivity.py``: each layer's error when it alone is quantized, worst first) and measures again. A layer
   whose keeping does not remove at least :data:`MIN_GAIN` of the remaining cosine shortfall goes back to INT8:
   the ranking measures layers alone, and in the whole network some of them matter less than it says;
3. stops when the target is met, when the cap on kept layers (``max_fp_share`` of the quantizable layers) is
   reached, or after :data:`CANDIDATES_PER_KEPT` candidates per allowed layer.

Kept layers run in FP16 (``--keep-precision auto|fp16``; a kept layer whose input or output FP16 cannot hold
stays FP32, see ``trtpipe.onnx.fp16``), as TensorRT users mix INT8 and FP16; with ``auto``, when FP16 kept
layers do not meet the target but the same layers in FP32 do, FP32 is chosen and the result says why.

Why cosine steers the search (measured with tests/perf/bench_fidelity.py on EfficientNet-Lite0): the mean
cosine on 64 held-back images stayed within 0.0003 of the cosine on 480 independent crops at every step, while
top-1 agreement on the same 64 images moved by +-0.03 from one step to the next (a few near-ties flip).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from trtpipe.errors import TrtpipeError
from trtpipe.spec import FIDELITY_METRICS, REQUIRED_METRICS, FidelityTarget

log = logging.getLogger("trtpipe")

HELD_BACK = 0.25  # share of the calibration images held back for the fidelity check
MIN_HELD_BACK = 8  # fewer held-back images than this cannot check a target
MIN_GAIN = 0.02  # a kept layer must cut the cosine shortfall (1 - cosine) by 2% to stay kept
CANDIDATES_PER_KEPT = 2  # candidates tried per layer the cap allows, before the search gives up
FIGURES = (
    "cosine_mean", "top1_agreement", "top1_agreement_confident", "confident_images", "failed_images",
    # the task's own measure (task_fidelity.py): absent (None) for a task without one
    "detection_f1", "detection_map50", "detection_mean_iou", "detection_precision", "detection_recall",
    "reference_boxes", "mask_miou", "pixel_agreement",
)
# The task figures whose shortfall (1 - figure) the search drives down beside the cosine's: a layer that moves
# detections or masks matters to the task however little it moves the cosine.
TASK_SHORTFALLS = ("detection_f1", "mask_miou")


class FidelityTargetError(TrtpipeError):
    """An INT8 model cannot meet its fidelity target (or it cannot be measured); nothing was written."""


@dataclass(frozen=True)
class Step:
    """One measurement of the search: the layer tried (None: the starting point), whether it stayed kept."""

    layer: str | None
    kept: bool
    figures: Mapping[str, float | int | None]

    def to_json(self) -> dict:
        return {"layer": self.layer, "kept": self.kept, **dict(self.figures)}


@dataclass(frozen=True)
class SearchResult:
    """What the fidelity check of one Q/DQ ONNX found and decided; stored in the calibration cache and sidecar."""

    target: str | None  # FidelityTarget text; None: no target (--fidelity-target none)
    met: bool | None  # None when no target was checked
    enforced: bool  # False: measured but not enforced (random weights, or the fidelity verb)
    kept: tuple[str, ...]  # every layer kept in floating point (forced first, then those the search kept)
    forced: tuple[str, ...]  # named by --keep-fp / --auto-keep
    keep_precision: str  # fp16 | fp32: what the kept layers run in
    fp32_layers: tuple[str, ...]  # kept layers left FP32 although FP16 was chosen (FP16 cannot hold their tensors)
    figures: Mapping[str, float | int | None]  # of the model written, on the held-back images
    held_back_images: int
    calibration_images: int
    quantizable_layers: int
    cap: int  # layers the search may keep besides the forced ones
    steps: tuple[Step, ...] = ()
    seconds: float = 0.0  # measuring and searching (not calibrating)
    note: str = ""  # why a precision was chosen, why a bound was not checked, ...
    unchecked: tuple[str, ...] = field(default=())  # target bounds that could not be measured (no confident images)
    reused: bool = field(default=False, compare=False)  # read from the calibration cache (not stored)

    def to_json(self) -> dict:
        return {
            "target": self.target, "met": self.met, "enforced": self.enforced, "kept": list(self.kept),
            "forced": list(self.forced), "keep_precision": self.keep_precision, "fp32_layers": list(self.fp32_layers),
            "figures": dict(self.figures), "held_back_images": self.held_back_images,
            "calibration_images": self.calibration_images, "quantizable_layers": self.quantizable_layers,
            "cap": self.cap, "steps": [s.to_json() for s in self.steps], "seconds": round(self.seconds, 2),
            "note": self.note, "unchecked": list(self.unchecked),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "SearchResult":
        steps = tuple(
            Step(s["layer"], bool(s["kept"]), {k: s.get(k) for k in FIGURES if k in s}) for s in data.get("steps", [])
        )
        return cls(
            data["target"], data["met"], bool(data["enforced"]), tuple(data["kept"]), tuple(data["forced"]),
            str(data["keep_precision"]), tuple(data["fp32_layers"]), dict(data["figures"]),
            int(data["held_back_images"]), int(data["calibration_images"]), int(data["quantizable_layers"]),
            int(data["cap"]), steps, float(data.get("seconds", 0.0)), str(data.get("note", "")),
            tuple(data.get("unchecked", ())),
        )

    @property
    def searched(self) -> tuple[str, ...]:
        """The layers the search kept (besides the forced ones)."""
        return tuple(name for name in self.kept if name not in self.forced)

    def figures_text(self) -> str:
        """``cosine 0.99912, top-1 0.938 (1.000 on 43 confident)``."""
        f = self.figures
        parts = [f"cosine {f['cosine_mean']:.5f}"] if f.get("cosine_mean") is not None else []
        if f.get("top1_agreement") is not None:
            confident = f.get("top1_agreement_confident")
            extra = f" ({confident:.3f} on {f.get('confident_images')} confident)" if confident is not None else ""
            parts.append(f"top-1 {f['top1_agreement']:.3f}{extra}")
        if f.get("detection_f1") is not None:
            parts.append(
                f"detection F1 {f['detection_f1']:.3f}, mAP@0.5 {f['detection_map50']:.3f} "
                f"on {f.get('reference_boxes')} FP32 boxes"
            )
        elif f.get("reference_boxes") is not None:
            parts.append(f"detection F1 not measurable ({f['reference_boxes']} FP32 boxes)")
        if f.get("mask_miou") is not None:
            parts.append(f"mask mIoU {f['mask_miou']:.3f}, pixels {f['pixel_agreement']:.4f}")
        if f.get("failed_images"):
            parts.append(f"{f['failed_images']} images failed")
        return ", ".join(parts) or "no figures"

    def kept_text(self) -> str:
        """``9 layers kept in FP16 (2 named; 7 most INT8-sensitive, 4 more tried did not help)``."""
        if not self.kept:
            return "every layer INT8"
        tried = sum(1 for s in self.steps if s.layer is not None and not s.kept)
        reasons = []
        if self.forced:
            reasons.append(f"{len(self.forced)} named by --keep-fp/--auto-keep")
        if self.searched:
            reasons.append(f"{len(self.searched)} most INT8-sensitive, kept while each improved the cosine")
        if tried:
            reasons.append(f"{tried} more tried did not help")
        precision = self.keep_precision.upper()
        if self.fp32_layers and self.keep_precision == "fp16":
            precision += f" ({len(self.fp32_layers)} FP32: FP16 cannot hold their tensors)"
        return f"{len(self.kept)}/{self.quantizable_layers} layers kept in {precision} ({'; '.join(reasons)})"

    def summary(self) -> str:
        """One clause for the closing line of build/calibrate: figures, target, kept layers, time."""
        where = f"on {self.held_back_images} held-back images"
        if self.target is None:
            return f"{self.note.split(':')[0]}; {self.kept_text()}"
        verdict = "met" if self.met else "NOT met"
        if not self.enforced:
            verdict += ", not enforced" + (": random weights" if "RANDOM WEIGHTS" in self.note else "")
        if self.unchecked:
            verdict += f"; {', '.join(self.unchecked)} not measurable"
        return (
            f"INT8 fidelity {where}: {self.figures_text()} (target {self.target} {verdict}); "
            f"{self.kept_text()}; " + ("reused from the calibration cache" if self.reused else f"checked in {self.seconds:.0f} s")
        )


def meets(target: FidelityTarget, figures: Mapping[str, float | int | None]) -> tuple[bool, tuple[str, ...]]:
    """Whether ``figures`` meet ``target``: (met, the bounds that could not be measured and were skipped).

    A bound whose figure is missing (top-1 of an output that is not (images, classes); confident-image agreement
    with no confident image) is skipped and named; the cosine is always measured. A task bound
    (:data:`~trtpipe.spec.REQUIRED_METRICS`: detection F1 on too few FP32 boxes, say) is named and not met: a task
    figure that could not be measured must not read as a pass.
    """
    unchecked = []
    met = True
    for name, bound in target.bounds.items():
        value = figures.get(FIDELITY_METRICS[name][0])
        if value is None:
            unchecked.append(FIDELITY_METRICS[name][1])
            met = met and name not in REQUIRED_METRICS
        elif value < bound:
            return False, tuple(unchecked)
    return met, tuple(unchecked)


def shortfall(figures: Mapping[str, float | int | None]) -> float:
    """What the search drives down: 1 - cosine, plus 1 - each task figure measured (:data:`TASK_SHORTFALLS`).

    1.0 when the cosine could not be measured. For a classifier (no task figure here) it is 1 - cosine as before.
    """
    cosine = figures.get("cosine_mean")
    if cosine is None:
        return 1.0
    return (1.0 - cosine) + sum(1.0 - figures[name] for name in TASK_SHORTFALLS if figures.get(name) is not None)


def cap_for(layers: int, share: float) -> int:
    """How many layers the search may keep: ``ceil(share * layers)`` (so a small model may keep one)."""
    return int(math.ceil(share * layers - 1e-9)) if share > 0 else 0


def search_kept_layers(
    target: FidelityTarget,
    ranking: Callable[[], Sequence[str]],
    measure: Callable[[tuple[str, ...]], Mapping[str, float | int | None]],
    forced: tuple[str, ...],
    cap: int,
    progress=None,
) -> tuple[tuple[str, ...], Mapping, tuple[Step, ...]]:
    """Keeps layers in floating point, most harmful first, until ``measure`` meets ``target``.

    Args:
        target: the bounds to meet.
        ranking: returns every layer name, worst first (called only when the start misses the target).
        measure: kept layers -> figures of the Q/DQ model with those layers in floating point (``FIGURES``).
        forced: layers kept whatever the search finds (--keep-fp / --auto-keep); not counted in ``cap``.
        cap: most layers the search may add.
        progress: a tqdm bar (or None): one tick per measurement.

    Returns:
        (kept layers, figures of the model with them, every step). The figures may miss the target: the
        caller decides what that means.
    """
    kept = list(forced)
    current = measure(tuple(kept))
    steps = [Step(None, True, current)]
    _tick(progress, target, current, kept)
    if meets(target, current)[0] or cap == 0:
        return tuple(kept), current, tuple(steps)
    tried = 0
    for layer in ranking():
        if meets(target, current)[0] or len(kept) - len(forced) >= cap or tried >= CANDIDATES_PER_KEPT * cap:
            break
        if layer in kept:
            continue
        trial = measure(tuple(kept) + (layer,))
        tried += 1
        helped = shortfall(trial) <= shortfall(current) * (1.0 - MIN_GAIN)
        steps.append(Step(layer, helped, trial))
        if helped:
            kept.append(layer)
            current = trial
        _tick(progress, target, current, kept)
    return tuple(kept), current, tuple(steps)


def _tick(progress, target: FidelityTarget, figures, kept) -> None:
    if progress is None:
        return
    cosine = figures.get("cosine_mean")
    shown = f"cosine {cosine:.5f}" if cosine is not None else "cosine -"
    progress.set_postfix_str(f"{shown} (target {target}), {len(kept)} kept", refresh=False)
    progress.update(1)


def fidelity_clause(data: Mapping) -> str:
    """The closing-line clause for a sidecar's ``fidelity`` entry (:meth:`SearchResult.summary`, plus the time)."""
    clause = SearchResult.from_json(data).summary()
    if data.get("prepare_seconds") is not None:
        clause += f"; calibration + check {data['prepare_seconds']:.0f} s"
    return clause


def figures_of(result) -> dict:
    """The figures of a FidelityResult that the search and the sidecar keep."""
    return {name: getattr(result, name) for name in FIGURES}
