"""Argument helpers shared by the verb modules."""

from __future__ import annotations

import argparse

from trtpipe.spec import BatchRange, ShapeRange


def batch_range(text: str) -> BatchRange:
    return BatchRange.parse(text)


def shape_ranges(values: list[str] | None) -> tuple[ShapeRange, ...]:
    """``--shapes a:...,b:...`` or repeated ``--shapes``; commas separate inputs."""
    specs = [part for value in values or [] for part in value.split(",") if part]
    return tuple(ShapeRange.parse(spec) for spec in specs)


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_flavor_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flavor",
        choices=("tensorrt", "tensorrt_rtx"),
        help="TensorRT flavour when several are installed (default: tensorrt, else tensorrt_rtx)",
    )
