"""`trtpipe build` and `trtpipe inspect` from the command line: one-line errors with a Hint, exit code 2."""

import pytest

from trtpipe.cli.main import main

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_build_prints_notes_and_one_summary_line(tiny_onnx, tmp_path, capsys):
    code, out, err = run_cli(capsys, "build", str(tiny_onnx()), "-o", str(tmp_path / "t.engine"), "--flavor", "tensorrt_rtx")
    assert code == 0
    assert "note: input 'input' has a dynamic batch axis and no --batch was given" in out
    assert out.strip().splitlines()[-1].startswith(f"built {tmp_path / 't.engine'} (fp32")
    code, out, _ = run_cli(capsys, "build", str(tiny_onnx()), "-o", str(tmp_path / "t.engine"))
    assert code == 0 and "is up to date" in out


def _assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("trtpipe ")]
    assert len(lines) == 1, err
    assert "Hint:" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        (lambda p, t: ["build", str(t / "missing.onnx")], ["missing.onnx: no such file"]),
        (lambda p, t: ["build", str(t)], ["is a directory"]),
        (lambda p, t: ["build", str(p(name="x.onnx")), "--batch", "4:2:1"], ["batch range 4:2:1 is invalid"]),
        (lambda p, t: ["build", str(p(name="x.onnx")), "--batch", "0:1:2"], ["batch range 0:1:2 is invalid"]),
        (lambda p, t: ["build", str(p(name="x.onnx")), "--batch", "1:9:8"], ["batch range 1:9:8"]),
        (lambda p, t: ["build", str(p(name="x.onnx", custom_op=True))], ["'weird0' (MyCustomOp)"]),
        (lambda p, t: ["build", str(p(name="x.onnx", input_shape=("N", 3, "H", "W")))], ["--minShapes input:1x3x"]),
        (lambda p, t: ["build", str(p(name="x.onnx")), "--opt-level", "9"], ["optimization level is 9"]),
    ],
    ids=["missing", "directory", "min>opt", "zero", "opt>max", "parser-rejects", "dynamic-hw", "opt-level"],
)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tiny_onnx, tmp_path, capsys, make_args, fragments):
    args = make_args(tiny_onnx, tmp_path)
    before = set(tmp_path.iterdir())
    code, _, err = run_cli(capsys, *args)
    _assert_one_line_error(code, err, *fragments)
    assert set(tmp_path.iterdir()) == before  # no engine, sidecar or temp file


def test_not_onnx_and_truncated(tmp_path, tiny_onnx, capsys):
    text = tmp_path / "readme.onnx"
    text.write_text("hello\n" * 50)
    code, _, err = run_cli(capsys, "build", str(text))
    _assert_one_line_error(code, err, "not a readable ONNX model")
    model = tiny_onnx(name="cut.onnx")
    model.write_bytes(model.read_bytes()[:200])
    code, _, err = run_cli(capsys, "build", str(model))
    _assert_one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.onnx", "readme.onnx"]


def test_inspect_onnx_lists_io_ops_and_what_the_parser_rejects(tiny_onnx, capsys):
    code, out, _ = run_cli(capsys, "inspect", str(tiny_onnx(custom_op=True)))
    assert code == 0
    assert "input" in out and "?x3x32x32" in out and "opset 17" in out
    assert "Conv" in out and "MyCustomOp" in out
    assert "REJECTED" in out and "no importer for MyCustomOp: 1 node(s): weird0" in out


def test_inspect_engine_shows_sidecar_and_why_tensorrt_cannot_load_it_here(tiny_onnx, tmp_path, capsys):
    engine = tmp_path / "t.engine"
    assert main(["build", str(tiny_onnx()), "-o", str(engine), "--batch", "1:2:4"]) == 0
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "inspect", str(engine))
    assert code == 0
    assert "profile 0 input: min 1x3x32x32 opt 2x3x32x32 max 4x3x32x32" in out
    from trtpipe.testing import gpu_unavailable_reason

    if gpu_unavailable_reason():
        assert "not loaded here (deserializing needs a GPU" in out


def test_help_works_without_importing_tensorrt():
    import subprocess
    import sys

    code = (
        "import sys; from trtpipe.cli.main import build_parser; build_parser(); "
        "heavy = [m for m in ('tensorrt', 'tensorrt_rtx', 'torch', 'onnxruntime') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ctrl_c_during_the_tensorrt_build_leaves_no_engine_and_exits_130(zoo_onnx, tmp_path):
    """A real SIGINT sent to `trtpipe build` while TensorRT builds (the write phase: tests/builder).

    This moment matters: TensorRT swallows a KeyboardInterrupt raised in its callbacks and
    would finish and write the engine anyway; trtpipe cancels the build instead.
    """
    import signal
    import subprocess
    import sys

    out_dir = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "trtpipe.cli.main", "build", str(zoo_onnx("mobilenetv2", weights="random")),
         "-o", str(out_dir / "m.engine"), "--batch", "1:4:8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for line in process.stderr:  # "building m.engine from ... " is logged just before the build call
        if line.startswith("building "):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted; nothing partial was left on disk" in err
    left = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    assert left == [], left
