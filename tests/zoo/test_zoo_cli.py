"""`trtpipe zoo` and `trtpipe export`: exit code 0 on success, 2 with a one-line Hint on bad input."""

from __future__ import annotations

import socket

import pytest

from trtpipe.cli.main import main
from trtpipe.zoo.sources import torchvision as tv_source


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "an error message was expected on stderr"
    return err[-1]


def test_zoo_list_shows_every_model_and_where_weights_come_from(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mobilenetv2", "resnet18", "resnet50", "efficientnet_lite0", "timm:<name>"):
        assert name in out
    efficientnet_row = next(line for line in out.splitlines() if line.startswith("efficientnet_lite0"))
    assert "224x224" in efficientnet_row and "pretrained (in wheel)" in efficientnet_row


def test_zoo_show_prints_the_spec(capsys):
    assert main(["zoo", "show", "resnet18"]) == 0
    assert '"crop_fraction": 0.875' in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["export", "mobilenet"], "did you mean 'mobilenetv2'?"),
        (["zoo", "show", "resnet19"], "did you mean 'resnet18'?"),
        (["export", "mobilenetv2", "--opset", "5"], "opset 5 is outside"),
        (["export", "mobilenetv2", "--weights", "nope.pth"], "not a checkpoint file"),
        (["export", "mobilenetv2", "-o", "model.txt"], "does not end in .onnx"),
    ],
)
def test_bad_input_exits_2_with_a_hint(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(f"trtpipe {argv[0]}: error:") and expected in line and "Hint:" in line
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_directory_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["export", "mobilenetv2", "--weights", "random", "-o", str(blocker / "m.onnx")]) == 2
    assert "is not a directory" in _error_line(capsys)


def test_pretrained_torchvision_weights_offline_exit_2_and_leave_nothing(tmp_path, capsys):
    try:
        socket.getaddrinfo("download.pytorch.org", 443)
        pytest.skip("download.pytorch.org resolves here: weights may download")
    except OSError:
        pass
    if (tv_source.hub_checkpoint_dir() / "resnet18-f37072fd.pth").is_file():
        pytest.skip("resnet18 weights are cached here")
    target = tmp_path / "out" / "resnet18.onnx"
    assert main(["export", "resnet18", "--weights", "pretrained", "-o", str(target)]) == 2
    line = _error_line(capsys)
    assert "ResNet18_Weights.IMAGENET1K_V1 could not be loaded" in line and "Hint:" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag, strict", [([], True), (["--parity", "warn"], False)])
def test_parity_flag_reaches_the_exporter(flag, strict, monkeypatch, tmp_path):
    import trtpipe.zoo.export

    seen = {}
    monkeypatch.setattr(trtpipe.zoo.export, "export_model", lambda *args, **kwargs: seen.update(kwargs))
    assert main(["export", "mobilenetv2", "-o", str(tmp_path / "m.onnx"), *flag]) == 0
    assert seen["strict_parity"] is strict


def test_zoo_list_ends_with_a_summary_and_says_what_auto_gives(capsys, monkeypatch):
    from trtpipe.zoo import registry

    monkeypatch.setattr(registry, "host_reachable", lambda host: False)
    assert main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "SOURCE", "TASK", "INPUT", "WEIGHTS"]
    assert "pretrained (download)" not in "\n".join(lines)  # nothing can download here: no row may promise it
    assert next(line for line in lines if line.startswith("timm:<name>")).count("random here (no network) unless cached")
    assert lines[-1].startswith(f"{len(registry.list_models())} models (") and "--weights auto here gives pretrained" in lines[-1]
