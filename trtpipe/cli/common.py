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


EXTRA_PROFILES = "extra_profile_options"  # namespace attribute: profile number -> {dest: value} for --profile=1..


class _ProfileOption(argparse.Action):
    """An option that belongs to the optimization profile named by the last ``--profile=N`` before it (trtexec's
    form): profile 0's go where argparse puts them, later profiles' into ``namespace.extra_profile_options``."""

    def __init__(self, option_strings, dest, append: bool = False, **kwargs):
        self.append = append
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, "profile", None) or 0
        if current == 0:
            target = namespace.__dict__
        else:
            target = _extra_groups(namespace).setdefault(current, {})
        target[self.dest] = [*(target.get(self.dest) or []), values] if self.append else values


class _ProfileNumber(argparse.Action):
    """``--profile=N``: the options after it, up to the next ``--profile``, make profile N."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        if values > 0:
            _extra_groups(namespace).setdefault(values, {})


def _extra_groups(namespace: argparse.Namespace) -> dict:
    """The namespace's own {profile number: options} (made per parse: an argparse default would be shared)."""
    if getattr(namespace, EXTRA_PROFILES, None) is None:
        setattr(namespace, EXTRA_PROFILES, {})
    return getattr(namespace, EXTRA_PROFILES)


def extra_profiles(args: argparse.Namespace):
    """The ``ProfileOptions`` of ``--profile=1 ...``, ``--profile=2 ...`` (profile 0 is the options before them).

    Raises:
        ConfigError: profile numbers that do not run 1, 2, ... without a gap.
    """
    from trtpipe.spec import BatchRange, ProfileOptions

    groups = getattr(args, EXTRA_PROFILES, None) or {}
    if sorted(groups) != list(range(1, len(groups) + 1)):
        raise ConfigError(
            f"--profile numbers {sorted({0, *groups})} do not run 0, 1, 2, ... without a gap",
            "number the profiles as trtexec does: --profile=0 --minShapes ... --profile=1 --minShapes ...",
        )
    return tuple(
        ProfileOptions(BatchRange.parse(group["batch"]) if group.get("batch") else None,
                       profile_shapes(group.get("min_shapes"), group.get("opt_shapes"), group.get("max_shapes")))
        for _, group in sorted(groups.items())
    )


def add_postprocess_arguments(parser: argparse.ArgumentParser, where: str, output_note: str = "") -> argparse._ArgumentGroup:
    """``--fuse-postprocess`` and the thresholds it builds in (``--conf --iou --max-det --topk``), for ``build`` and
    ``export``; ``where`` names what gets the head ("the engine", "the ONNX"). Returns the group, for a verb's own
    additions."""
    post = parser.add_argument_group(f"post-processing in {where} (--fuse-postprocess)")
    post.add_argument("--fuse-postprocess", action="store_true",
                      help=f"append the task head to {where}: detection returns num_detections, boxes, scores, classes "
                           "(decode + class-wise NMS, the best --max-det, padded), classification the top --topk scores "
                           f"and indices, segmentation the argmax mask{output_note}")
    post.add_argument("--conf", type=float, default=0.25, help="--fuse-postprocess: score threshold (default 0.25)")
    post.add_argument("--iou", type=float, default=0.45, help="--fuse-postprocess: NMS IoU threshold (default 0.45)")
    post.add_argument("--max-det", type=int, default=300, help="--fuse-postprocess: boxes per image (default 300)")
    post.add_argument("--topk", type=int, default=5, help="--fuse-postprocess: classes per image (default 5)")
    return post


def postprocess_from_args(args: argparse.Namespace) -> str | None:
    """The ``fuse_postprocess`` options text of :func:`add_postprocess_arguments`' flags; None without the flag."""
    from trtpipe.spec import postprocess_options

    return postprocess_options(args.conf, args.iou, args.max_det, args.topk) if args.fuse_postprocess else None


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """trtexec's optimization-profile options (``NAME:SHAPE[,NAME:SHAPE]``, repeatable), and the old ``--shapes``;
    ``--profile=N`` starts the options of profile N (and ``--batch``, which the verb adds with :class:`_ProfileOption`)."""
    parser.set_defaults(**{EXTRA_PROFILES: None})
    parser.add_argument("--profile", type=int, action=_ProfileNumber, default=0, metavar="N",
                        help="the --batch/--minShapes/--optShapes/--maxShapes after it make optimization profile N "
                             "(trtexec's form: --profile=0 ... --profile=1 ...; default: one profile, 0)")
    for option, which in (("--minShapes", "smallest"), ("--optShapes", "the tuned-for"), ("--maxShapes", "largest")):
        parser.add_argument(option, dest=option[2:5] + "_shapes", action=_ProfileOption, append=True,
                            metavar="NAME:1x3x224x224",
                            help=f"optimization profile: {which} shape of a dynamic input, as trtexec")
    parser.add_argument("--shapes", dest="profile_shapes", action=_DeprecatedAppend,
                        preferred="--minShapes/--optShapes/--maxShapes (in trtexec, --shapes is the runtime shape: "
                                  "see trtpipe bench --shapes)",
                        metavar="NAME:MIN:OPT:MAX", help="deprecated: use --minShapes/--optShapes/--maxShapes")


def _floats(text: str) -> tuple[float, ...]:
    """``0.5`` or ``0.485,0.456,0.406`` -> floats (one per channel, or one for all)."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated numbers, e.g. 0.485,0.456,0.406 or 0.5") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _scale(text: str) -> float:
    """``--scale 1/255``, ``0.00392`` or ``1``: the factor applied to 0..255 pixels before mean/std."""
    try:
        numerator, _, denominator = text.partition("/")
        value = float(numerator) / (float(denominator) if denominator else 1.0)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction such as 1/255") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def add_spec_arguments(parser: argparse.ArgumentParser, *, labels: bool = True) -> None:
    """The preprocessing flags of every verb that needs a spec: a preset and overrides (see trtpipe.presets).

    Args:
        labels: add ``--labels FILE`` (infer and triton-export have their own, which means the same).
    """
    from trtpipe.presets import PRESETS
    from trtpipe.spec import INTERPOLATIONS, RESIZE_MODES, TASKS

    group = parser.add_argument_group(
        "preprocessing", "how images become the network's input, over <stem>.preprocess.json (when there is one) and "
        "what the ONNX says (fixed size, channels, layout, uint8 input, exporter metadata); what nothing says is "
        "assumed and said. `trtpipe spec MODEL.onnx` writes the result beside the model",
    )
    group.add_argument("--preset", choices=tuple(PRESETS), metavar="NAME",
                       help="a model family's preprocessing: " + "; ".join(f"{p.name}: {p.source}" for p in PRESETS.values()))
    group.add_argument("--input-size", metavar="HxW", help="network input height x width, where the ONNX leaves them dynamic")
    group.add_argument("--resize", choices=RESIZE_MODES, help="resize_crop (shorter side, centre crop), stretch or letterbox")
    group.add_argument("--interpolation", choices=INTERPOLATIONS)
    group.add_argument("--mean", type=_floats, metavar="M[,M...]", help="per channel in 0..1 units, in channel order (one value: all)")
    group.add_argument("--std", type=_floats, metavar="S[,S...]", help="per channel (one value: all)")
    group.add_argument("--scale", dest="pixel_scale", type=_scale, metavar="1/255",
                       help="factor on 0..255 pixels before mean/std (1/255, or 1 for raw pixels)")
    group.add_argument("--channel-order", metavar="ORDER",
                       help="the network's channels from the decoded BGR image: RGB, BGR, GRAY, RGBA, BGRA "
                            "(alpha 255), or one letter of R, G, B, A per channel")
    group.add_argument("--layout", choices=("NCHW", "NHWC"))
    group.add_argument("--task", choices=TASKS)
    if labels:
        group.add_argument("--labels", metavar="FILE|SET", help="class names: a text file, one a line, or a bundled set")


def spec_overrides(args: argparse.Namespace):
    """The SpecOverrides the parsed flags of :func:`add_spec_arguments` give."""
    from trtpipe.presets import SpecOverrides

    channel_order = getattr(args, "channel_order", None)
    return SpecOverrides(
        preset=getattr(args, "preset", None), input_size=getattr(args, "input_size", None),
        resize=getattr(args, "resize", None), interpolation=getattr(args, "interpolation", None),
        mean=getattr(args, "mean", None), std=getattr(args, "std", None), pixel_scale=getattr(args, "pixel_scale", None),
        channel_order=channel_order.upper() if channel_order else None, layout=getattr(args, "layout", None),
        task=getattr(args, "task", None), labels=getattr(args, "labels", None),
    )


def spec_from_args(args: argparse.Namespace, model, *, required: bool = True):
    """The preprocess spec for ``model`` (an .onnx, or an engine) from its spec file, its facts and the flags.

    For an engine, the sidecar's spec with the flags laid over it (None without flags: the library reads it). For an
    ONNX, :func:`trtpipe.presets.resolve_spec`; what it assumed is said in one line on stderr. With ``required`` False
    (an FP32 build), a model whose first input is not an image (not 4-D, several inputs) gets None, not a guess.

    Raises:
        ConfigError, InputError: a malformed flag, an unknown preset, a corrupt spec file or sidecar.
    """
    from pathlib import Path

    from trtpipe.presets import assumed_line, override_spec, resolve_spec

    overrides = spec_overrides(args)
    path = Path(model)
    if path.suffix.lower() != ".onnx":
        if not overrides.given:
            return None
        from trtpipe.runtime.compat import load_sidecar

        spec = load_sidecar(path).preprocess_spec
        if spec is None:
            raise ConfigError(f"engine {path}: its sidecar has no preprocess spec for the preprocessing flags to change",
                              "rebuild the engine from its ONNX with the flags (trtpipe build MODEL.onnx --preset NAME ...)")
        return override_spec(spec, overrides)
    if not path.is_file():
        return None  # the verb's own check names the missing file
    from trtpipe.spec import preprocess_path_for

    facts = None
    if not required and not preprocess_path_for(path).is_file() and not overrides.given:
        from trtpipe.onnx.facts import read_facts

        facts = read_facts(path)
        if facts.layout is None or facts.inputs != 1:
            return None
    try:
        spec = resolve_spec(path, overrides, facts)
    except ConfigError as exc:
        if required or overrides.given:
            raise
        # an FP32 build needs no spec: one that cannot be derived (a 6-channel input, no --channel-order) is left out
        print(f"note: {path.name}: no preprocess spec recorded in the sidecar ({exc.message})", file=sys.stderr)
        return None
    line = assumed_line(spec, path)
    if line:
        print(f"note: {line}", file=sys.stderr)
    return spec

