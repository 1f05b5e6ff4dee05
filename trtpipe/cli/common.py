"""Argument helpers shared by the verb modules."""

from __future__ import annotations

import argparse
import re
import sys

from trtpipe.errors import ConfigError
from trtpipe.spec import ShapeRange


def shape_ranges(values: list[str] | None) -> tuple[ShapeRange, ...]:
    """``--shapes a:...,b:...`` or repeated ``--shapes``; commas separate inputs."""
    specs = [part for value in values or [] for part in value.split(",") if part]
    return tuple(ShapeRange.parse(spec) for spec in specs)


def _named_shapes(values: list[str] | None, option: str) -> dict[str, tuple[int, ...]]:
    """trtexec's ``NAME:1x3x224x224[,NAME:...]`` (repeatable) -> {name: shape}; names may contain ':'."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in (part.strip() for value in values or [] for part in value.split(",")):
        if not spec:
            continue
        name, _, dims = spec.rpartition(":")
        if not name or not re.fullmatch(r"-?\d+(x-?\d+)*", dims):
            raise ConfigError(
                f"{option} {spec!r} is not NAME:SHAPE",
                f"write {option} NAME:1x3x224x224 (comma-separate several inputs), as trtexec does",
            )
        shape = tuple(int(d) for d in dims.split("x"))
        if min(shape) < 1:
            raise ConfigError(
                f"{option} {spec!r} has a dimension of {min(shape)}, expected every dimension at least 1",
                f"give the concrete size of every axis (no 0 or -1 for a dynamic one), e.g. {option} {name}:1x3x224x224",
            )
        if name in shapes:
            raise ConfigError(f"{option} gives input {name!r} twice", f"give each input once in {option}")
        shapes[name] = shape
    return shapes


def runtime_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``bench --shapes NAME:SHAPE``: the shape an input runs at (trtexec's ``--shapes``)."""
    return _named_shapes(values, "--shapes")


def profile_shapes(
    min_shapes: list[str] | None, opt_shapes: list[str] | None, max_shapes: list[str] | None, legacy: list[str] | None = None
) -> tuple[ShapeRange, ...]:
    """The optimization profile from trtexec's ``--minShapes/--optShapes/--maxShapes`` (and the deprecated
    ``build --shapes NAME:MIN:OPT:MAX``), one ShapeRange per input, in the order first named.

    As trtexec: an input given only in ``--optShapes`` gets min = max = opt (a fixed shape); otherwise all
    three are needed.

    Raises:
        ConfigError: a malformed spec, an input missing from some of the three, or named both ways.
    """
    lows, opts, highs = (_named_shapes(v, o) for v, o in ((min_shapes, "--minShapes"), (opt_shapes, "--optShapes"),
                                                         (max_shapes, "--maxShapes")))
    old = shape_ranges(legacy)
    ranges = []
    for name in dict.fromkeys([*lows, *opts, *highs]):
        if name in opts and name not in lows and name not in highs:
            ranges.append(ShapeRange(name, opts[name], opts[name], opts[name]))
            continue
        missing = [option for option, given in (("--minShapes", lows), ("--optShapes", opts), ("--maxShapes", highs))
                   if name not in given]
        if missing:
            raise ConfigError(
                f"input {name!r} has no {' or '.join(missing)}",
                f"give all three for a range (--minShapes {name}:1x... --optShapes {name}:8x... --maxShapes {name}:32x...), "
                "or only --optShapes for a fixed shape",
            )
        ranges.append(ShapeRange(name, lows[name], opts[name], highs[name]))
    both = sorted({r.name for r in ranges} & {r.name for r in old})
    if both:
        raise ConfigError(f"input(s) {both} are given both in --shapes and in --minShapes/--optShapes/--maxShapes",
                          "use --minShapes/--optShapes/--maxShapes only (--shapes NAME:MIN:OPT:MAX is deprecated)")
    return tuple(ranges) + old


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_flavor_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flavor",
        choices=("tensorrt", "tensorrt_rtx"),
        help="TensorRT flavour when several are installed (default: tensorrt, else tensorrt_rtx)",
    )


CALIB_METHODS = ("entropy", "max", "mse", "percentile")


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
            "top1, top1_confident; detection against FP32's boxes: f1, map50, box_iou; segmentation against FP32's "
            "masks: miou, pixels; auto: cosine=0.999,top1_confident=0.99 for classifiers, f1=0.95 for detection, "
            "miou=0.95 for segmentation; none: unchecked)",
        )
        parser.add_argument(
            "--keep-precision", choices=("auto", "fp16", "fp32"), default="auto",
            help="int8: what kept layers run in (default auto: FP16, or FP32 where only that meets the target)",
        )
        parser.add_argument(
            "--max-fp-share", type=float, default=0.25, metavar="SHARE",
            help="int8: the search keeps at most this share of the quantizable layers in floating point (default 0.25)",
        )


class _DeprecatedAppend(_DeprecatedAlias):
    """A deprecated spelling of a repeatable option: appends, and says which spelling to use instead."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, [*(getattr(namespace, self.dest, None) or []), values], option_string)


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """trtexec's optimization-profile options (``NAME:SHAPE[,NAME:SHAPE]``, repeatable), and the old ``--shapes``."""
    for option, which in (("--minShapes", "smallest"), ("--optShapes", "the tuned-for"), ("--maxShapes", "largest")):
        parser.add_argument(option, dest=option[2:5] + "_shapes", action="append", metavar="NAME:1x3x224x224",
                            help=f"optimization profile: {which} shape of a dynamic input, as trtexec")
    parser.add_argument("--shapes", dest="profile_shapes", action=_DeprecatedAppend,
                        preferred="--minShapes/--optShapes/--maxShapes (in trtexec, --shapes is the runtime shape: "
                                  "see trtpipe bench --shapes)",
                        metavar="NAME:MIN:OPT:MAX", help="deprecated: use --minShapes/--optShapes/--maxShapes")
