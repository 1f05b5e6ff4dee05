"""trtpipe calib-data: fill a folder with a default calibration set (scikit-image's photos, augmented)."""

from __future__ import annotations

import argparse

VERB = "calib-data"
HELP = "fill DIR (default calib_data/) with augmented sample photos if it holds no images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default="calib_data", help="default: calib_data")
    parser.add_argument("--count", type=int, default=320, help="images to write (default 320)")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from trtpipe.io import check_outputs
    from trtpipe.quant.calib_data import make_calib_data

    check_outputs(dirs={"FOLDER": args.folder})

    print(make_calib_data(args.folder, args.count, args.seed).summary())
    return 0
