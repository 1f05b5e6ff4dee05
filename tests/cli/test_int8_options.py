"""One spelling of the calibration-method option across verbs; the old one still works, with a note."""

import pytest

from trtpipe.cli.main import build_parser

VERBS = ("build", "calibrate", "fidelity", "sensitivity")


@pytest.mark.parametrize("verb", VERBS)
def test_calib_method_is_spelled_the_same_in_every_verb(verb):
    args = build_parser().parse_args([verb, "model.onnx", "--images", "d", "--calib-method", "percentile"])
    assert args.calib_method == "percentile"


@pytest.mark.parametrize("verb", ("calibrate", "fidelity", "sensitivity"))
def test_old_method_spelling_still_parses_and_says_it_is_deprecated(verb, capsys):
    args = build_parser().parse_args([verb, "model.onnx", "--images", "d", "--method", "max"])
    assert args.calib_method == "max"
    assert "--method is deprecated; use --calib-method" in capsys.readouterr().err


def test_old_spelling_is_not_advertised():
    help_text = build_parser()._subparsers._group_actions[0].choices["fidelity"].format_help()
    assert "--calib-method" in help_text and "--method " not in help_text
