"""``python -m trtpipe.coverage.worker NAME WORKDIR OUT.json [--no-int8]``: one model's coverage row, in its own process."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from trtpipe.coverage.sweep import cover_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--no-int8", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    row = cover_model(args.name, args.workdir, int8=not args.no_int8)
    args.out.write_text(json.dumps(row.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
