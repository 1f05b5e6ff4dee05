"""Argument helpers shared by the verb modules."""

from __future__ import annotations

import argparse

from trtpipe.spec import ShapeRange


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


CALIB_METHODS = ("entropy", "max", "percentile")


def add_int8_arguments(parser: argparse.ArgumentParser, *, method_flag: str = "--method", keep: bool = True) -> None:
    """The INT8 calibration options shared by build, calibrate, fidelity and sensitivity.

    Args:
        method_flag: the method option's name (``build`` says ``--calib-method``); its dest is ``calib_method``.
        keep: add ``--keep-fp`` / ``--auto-keep`` (mixed precision).
    """
    parser.add_argument(
        method_flag, dest="calib_method", choices=CALIB_METHODS, default="entropy",
        help="int8 calibration method (default: entropy; percentile measured best on EfficientNet-Lite0, "
        "see tests/perf/bench_fidelity.py)",
    )
    parser.add_argument("--max-images", type=int, default=256, help="calibration images used at most (default 256)")
    if keep:
        parser.add_argument("--keep-fp", type=csv_list, default=(), metavar="NODE,...", help="int8: layers kept in floating point")
        parser.add_argument("--auto-keep", type=int, default=0, metavar="K", help="int8: keep the K most sensitive layers in FP")
    parser.add_argument(
        "--no-bias-correction", dest="bias_correction", action="store_false",
        help="int8: leave biases as trained (default: correct the INT8 layers' mean rounding shift)",
    )
