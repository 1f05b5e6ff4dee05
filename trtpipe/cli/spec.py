"""trtpipe spec: write a model's preprocess spec from a preset, flags and what the ONNX says, without writing JSON."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import add_spec_arguments

VERB = "spec"
HELP = "write <stem>.preprocess.json beside an ONNX from a preset, flags and the ONNX's own facts, and print it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trtpipe.presets import PRESETS

    parser.add_argument("onnx", help="the ONNX model")
    parser.add_argument("preset_name", nargs="?", metavar="PRESET", choices=tuple(PRESETS),
                        help=f"a preset ({', '.join(PRESETS)}); the same as --preset")
    add_spec_arguments(parser)
    parser.add_argument("--force", action="store_true",
                        help="replace the <stem>.preprocess.json already there (derived afresh, not from it)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from trtpipe.cli.common import spec_overrides
    from trtpipe.errors import ConfigError, InputError
    from trtpipe.onnx.facts import read_facts
    from trtpipe.onnx.load import check_onnx_path, graph_io, load_onnx
    from trtpipe.presets import assumed_line, resolve_spec
    from trtpipe.quant.feeds import check_image_input
    from trtpipe.spec import preprocess_path_for

    onnx_path = check_onnx_path(args.onnx)
    if args.preset_name and args.preset and args.preset_name != args.preset:
        raise ConfigError(f"preset {args.preset_name!r} and --preset {args.preset} disagree", "give the preset once")
    args.preset = args.preset or args.preset_name
    target = preprocess_path_for(onnx_path)
    if target.exists() and not args.force:
        raise InputError(
            f"{target} exists; trtpipe does not replace a spec you may have written",
            f"pass --force to replace it, or give the flags to the verb you run (they go over {target.name})",
        )
    spec = resolve_spec(onnx_path, spec_overrides(args), read_facts(onnx_path), spec_file=False)
    inputs = graph_io(load_onnx(onnx_path, check=False, load_weights=False))[0]
    if len(inputs) == 1:
        check_image_input(spec, inputs[0], onnx_path)  # a spec that cannot feed the model is not written
    spec.save(target)
    shown = spec.to_dict()
    if isinstance(spec.labels, tuple) and len(spec.labels) > 12:  # an OCR dictionary: thousands of lines
        shown["labels"] = [*spec.labels[:5], f"... {len(spec.labels)} names in all, see {target.name}"]
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    line = assumed_line(spec, onnx_path)
    if line:
        print(f"note: {line}")
    print(f"wrote {target}" + (f" ({len(spec.assumed)} assumption(s) recorded in it)" if spec.assumed else ""))
    return 0
