"""Argument helpers shared by the verb modules."""

from __future__ import annotations

import argparse
import sys

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


class _DeprecatedAlias(argparse.Action):
    """Stores like the option it stands for, and says once which spelling to use instead."""

    def __init__(self, option_strings, dest, preferred: str, **kwargs):
        self.preferred = preferred
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated; use {self.preferred}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_int8_arguments(parser: argparse.ArgumentParser, *, keep: bool = True, target: bool = False) -> None:
    """The INT8 calibration options shared by build, calibrate, fidelity and sensitivity.

    One spelling in every verb: ``--calib-method`` (``--method``, the old spelling of calibrate, fidelity and
    sensitivity, still works and says it is deprecated).

    Args:
        keep: add ``--keep-fp`` / ``--auto-keep`` (mixed precision).
        target: add ``--fidelity-target`` / ``--keep-precision`` / ``--max-fp-share`` (build and calibrate).
    """
    parser.add_argument(
        "--calib-method", dest="calib_method", choices=CALIB_METHODS, default="percentile",
        help="int8 calibration method (default: percentile, measured best on EfficientNet-Lite0 in "
        "tests/perf/bench_fidelity.py; entropy is TensorRT's KL-divergence calibrator)",
    )
    parser.add_argument("--method", dest="calib_method", choices=CALIB_METHODS, action=_DeprecatedAlias,
                        preferred="--calib-method", help=argparse.SUPPRESS)
    parser.add_argument("--max-images", type=int, default=256, help="calibration images used at most (default 256)")
    if keep:
        parser.add_argument("--keep-fp", type=csv_list, default=(), metavar="NODE,...", help="int8: layers kept in floating point")
        parser.add_argument("--auto-keep", type=int, default=0, metavar="K", help="int8: keep the K most sensitive layers in FP")
    parser.add_argument(
        "--no-bias-correction", dest="bias_correction", action="store_false",
        help="int8: leave biases as trained (default: correct the INT8 layers' mean rounding shift)",
    )
    if target:
        parser.add_argument(
            "--fidelity-target", default="auto", metavar="auto|none|METRIC=VALUE,...",
            help="int8: what the Q/DQ model must keep of FP32 on a quarter of the images, held back from "
            "calibration; layers are kept in floating point, most harmful first, until it does (metrics: cosine, "
            "top1, top1_confident; auto: cosine=0.999,top1_confident=0.99 for classifiers, cosine=0.999 otherwise; "
            "none: unchecked)",
        )
        parser.add_argument(
            "--keep-precision", choices=("auto", "fp16", "fp32"), default="auto",
            help="int8: what kept layers run in (default auto: FP16, or FP32 where only that meets the target)",
        )
        parser.add_argument(
            "--max-fp-share", type=float, default=0.25, metavar="SHARE",
            help="int8: the search keeps at most this share of the quantizable layers in floating point (default 0.25)",
        )
