"""``trtpipe zoo list`` / ``trtpipe zoo show NAME``: the models trtpipe can export, and their preprocessing."""

from __future__ import annotations

import argparse
import json
import sys

VERB = "zoo"
HELP = "list the model zoo, or show one model's preprocessing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="zoo_action", metavar="ACTION")
    actions.add_parser("list", help="table of models: source, task, input size, weights available here")
    show = actions.add_parser("show", help="a model's preprocess spec as JSON (input size, crop, mean/std, labels)")
    show.add_argument("name", help="zoo name, or timm:<name>")


def run(args: argparse.Namespace) -> int:
    from trtpipe.errors import InputError
    from trtpipe.zoo.registry import get_model

    action = args.zoo_action or "list"
    if action == "list":
        print(format_table())
        print(summary_line())
        return 0
    if action == "show":
        entry = get_model(args.name)
        print(json.dumps(entry.preprocess.to_dict(), indent=2))
        # stderr: stdout stays one JSON document
        print(f"{entry.name}: {entry.task}, {entry.source}, labels {entry.preprocess.labels or 'none (class indices)'}, "
              f"weights here: {entry.weights_status()}", file=sys.stderr)
        return 0
    raise InputError(f"unknown zoo action {action!r}", "use `trtpipe zoo list` or `trtpipe zoo show NAME`")


def summary_line() -> str:
    """One line: how many models per task, and how many get pretrained weights with --weights auto here."""
    from collections import Counter

    from trtpipe.zoo.registry import list_families, list_models
    from trtpipe.zoo.sources.coverage_common import NO_SOURCE

    entries = list_models()
    tasks = Counter(entry.task for entry in entries)
    statuses = [entry.weights_status() for entry in entries]
    pretrained = sum(status.startswith("pretrained") for status in statuses)
    unavailable = sum(status == NO_SOURCE for status in statuses)
    per_task = ", ".join(f"{count} {task}" for task, count in sorted(tasks.items()))
    return (f"{len(entries)} models ({per_task}) and {len(list_families())} family; --weights auto here gives "
            f"pretrained weights for {pretrained}, random weights for {len(entries) - pretrained - unavailable}; "
            f"{unavailable} have no source installable here")


def format_table() -> str:
    """The zoo as an aligned text table, one row per model plus one per family (``timm:<name>``)."""
    from trtpipe.zoo.registry import list_families, list_models, probe_hosts
    from trtpipe.zoo.sources.timm import HUB_HOST
    from trtpipe.zoo.sources.torchvision import WEIGHTS_HOST

    probe_hosts((HUB_HOST, WEIGHTS_HOST))  # both at once: the table waits for the slower, at most 0.5 s
    rows = [("NAME", "SOURCE", "TASK", "INPUT", "WEIGHTS HERE", "DESCRIPTION")]
    for entry in list_models():
        spec = entry.preprocess
        size = f"{spec.height}x{spec.width}"
        rows.append((entry.name, entry.source, entry.task, size, entry.weights_status(), entry.description))
    for family in list_families():
        name = f"{family.prefix}:<name>"
        rows.append((name, family.prefix, "classification", "per model", family.weights_status(), family.description))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines)
