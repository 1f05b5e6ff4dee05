"""reports/coverage.json (one object per model, the keys of issue 6) and reports/coverage.md (table + summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from trtpipe.coverage.sweep import CoverageRow
from trtpipe.io import atomic_write_text

TASKS = ("classification", "detection", "segmentation")


def summary_lines(rows: Sequence[CoverageRow]) -> list[str]:
    """Counts per task against the issue's figures."""
    lines = []
    for task in TASKS:
        mine = [r for r in rows if r.task == task]
        built = [r for r in mine if r.exported and r.rtx_build_ok]
        line = f"{task}: {len(mine)} listed, {sum(r.exported for r in mine)} exported, {len(built)} exported and built"
        if task == "classification":
            line += f" ({100 * len(built) / max(len(mine), 1):.0f}% of the list; figure: >= 90%)"
        else:
            through = [r for r in built if any(n.startswith("pipeline (") for n in r.notes)]
            line += f", {len(through)} through the whole pipeline (figure: >= 5)"
        lines.append(line)
    qdq = [r for r in rows if r.int8_qdq_ok]
    lines.append(f"INT8 Q/DQ ONNX produced and built: {len(qdq)} of {sum(bool(r.exported) for r in rows)} exported models")
    return lines


def write_reports(rows: Sequence[CoverageRow], folder: str | Path = "reports") -> tuple[Path, Path]:
    """Writes coverage.json and coverage.md into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "coverage.json", folder / "coverage.md"
    atomic_write_text(json_path, json.dumps([r.to_dict() for r in rows], indent=2) + "\n")
    atomic_write_text(md_path, format_markdown(rows))
    return json_path, md_path


def format_markdown(rows: Sequence[CoverageRow]) -> str:
    lines = [
        "# Model coverage",
        "",
        "Export (ONNX checker), ONNX Runtime parity against the source framework, TensorRT-RTX parser verdict,",
        "TensorRT-RTX build on the CPU, INT8 Q/DQ ONNX built, and for detection/segmentation the Pipeline with its",
        "post-processing on scikit-image photos (ONNX Runtime). Models marked `random` have RANDOM weights (no",
        "network here): their outputs, boxes and masks are meaningless; only that they run and are well formed is checked.",
        "",
        *[f"- {line}" for line in summary_lines(rows)],
        "",
        "| model | task | source | exported | parity max abs | parser | RTX build | build s | INT8 Q/DQ | weights |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.task} | {r.source} | {_mark(r.exported)} | {_value(r.ort_parity_max_abs)} | "
            f"{_mark(r.trt_parser_ok)} | {_mark(r.rtx_build_ok)} | {_value(r.build_seconds)} | {_mark(r.int8_qdq_ok)} | {r.weights} |"
        )
    lines += ["", "## Notes per model", ""]
    for r in rows:
        lines.append(f"- **{r.name}**: " + "; ".join(r.notes).replace("|", "/"))
    return "\n".join(lines) + "\n"


def _mark(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "**no**"


def _value(value) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
