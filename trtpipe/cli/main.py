"""The ``trtpipe`` command: one module per verb in this package, each thin over the library API.

A verb module defines ``VERB`` (its name), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are found by name, so adding a verb is adding a file; heavy imports
stay inside ``run`` so that ``trtpipe --help`` is instant and works without TensorRT or torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import sys
from typing import Iterator

import trtpipe
from trtpipe.errors import TrtpipeError, command_line_options

log = logging.getLogger("trtpipe")

# Verbs that print an engine's CPU fallback and its reason in their own output (infer's "running" line, bench
# --pipeline's note): the loader's warning on stderr would say the same a second time.
VERBS_SHOWING_FALLBACK = ("infer", "bench")


def _verb_modules():
    package = importlib.import_module("trtpipe.cli")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in ("main", "common"):
            continue
        module = importlib.import_module(f"trtpipe.cli.{info.name}")
        if hasattr(module, "VERB"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trtpipe",
        description="Build TensorRT engines from ONNX (FP32/FP16/INT8), run them, and time them honestly.",
    )
    parser.add_argument("--version", action="version", version=f"trtpipe {trtpipe.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output (TensorRT's too)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for module in _verb_modules():
        sub = verbs.add_parser(module.VERB, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        with command_line_options(), _fallback_warning_shown_by(args.verb):  # hints name --flags, not Python keywords
            return int(args.run(args) or 0)
    except TrtpipeError as exc:
        print(f"trtpipe {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"trtpipe {args.verb}: interrupted; nothing partial was left on disk", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout's reader went away (`trtpipe infer ... | head`): not an error of ours. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again, and exit as a process killed by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


@contextlib.contextmanager
def _fallback_warning_shown_by(verb: str) -> Iterator[None]:
    """Drops the loader's CPU-fallback warning while a verb that shows the fallback itself runs."""
    if verb not in VERBS_SHOWING_FALLBACK:
        yield
        return
    from trtpipe.runtime.loader import FALLBACK_RECORD, log as loader_log

    def not_a_fallback(record: logging.LogRecord) -> bool:
        return not getattr(record, FALLBACK_RECORD, False)

    loader_log.addFilter(not_a_fallback)
    try:
        yield
    finally:
        loader_log.removeFilter(not_a_fallback)  # the library's own callers (tests, a notebook) still see it


if __name__ == "__main__":
    sys.exit(main())
