"""Every verb checks the paths it will write before its work: exit 2 naming the option, nothing done.

Each command names inputs that do not exist: a verb that did its work (or read its inputs) before checking
its outputs would fail on the missing input instead, so the error naming the output path shows the order.
"""

import os

import pytest

from trtpipe.cli.main import main
from trtpipe.errors import InputError
from trtpipe.io import check_outputs

VERBS = {
    "build -o": (["build", "{missing}/m.onnx", "-o", "{blocked}/m.engine"], "-o"),
    "build --timing-cache": (["build", "{missing}/m.onnx", "--timing-cache", "{blocked}/timing.cache"], "--timing-cache"),
    "calibrate -o": (["calibrate", "{missing}/m.onnx", "--images", "{missing}", "-o", "{blocked}/m.int8.onnx"], "-o"),
    "export -o": (["export", "mobilenetv2", "-o", "{blocked}/m.onnx"], "-o"),
    "fidelity --json": (["fidelity", "{missing}/m.onnx", "--images", "{missing}", "--json", "{blocked}/f.json"], "--json"),
    "fidelity --work-dir": (["fidelity", "{missing}/m.onnx", "--images", "{missing}", "--work-dir", "{blocked}/w"], "--work-dir"),
    "infer --json": (["infer", "{missing}/m.onnx", "{missing}/a.jpg", "--json", "{blocked}/r.json"], "--json"),
    "bench --json": (["bench", "{missing}/m.onnx", "--json", "{blocked}/b.json"], "--json"),
    "report -o": (["report", "{missing}/a.json", "-o", "{blocked}/compare.md"], "-o"),
    "sensitivity": (["sensitivity", "{blocked}/m.onnx", "--images", "{missing}"], "the ONNX's folder"),
    "calib-data": (["calib-data", "{blocked}/calib"], "FOLDER"),
    "coverage --workdir": (["coverage", "--workdir", "{blocked}/w"], "--workdir"),
    "coverage --reports": (["coverage", "--reports", "{blocked}/r"], "--reports"),
    "triton-export --repo": (["triton-export", "{missing}/m.onnx", "--repo", "{blocked}/repo"], "--repo"),
    "serve --repo": (["serve", "{missing}/m.onnx", "--repo", "{blocked}/repo"], "--repo"),
}


@pytest.mark.parametrize("verb", VERBS)
def test_an_unwritable_output_is_refused_before_the_work(verb, tmp_path, capsys):
    blocker = tmp_path / "a_file"  # a regular file where a folder would have to be
    blocker.write_text("not a folder\n")
    template, option = VERBS[verb]
    argv = [arg.format(missing=tmp_path / "missing", blocked=blocker) for arg in template]
    before = sorted(tmp_path.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("trtpipe ")]
    assert code == 2 and len(lines) == 1, err
    assert f"{option} " in lines[0] and "cannot be written" in lines[0] and str(blocker) in lines[0]
    assert f"{blocker} is not a directory (it is a file)" in lines[0] or "it is a file, expected a folder" in lines[0]
    assert "Hint: choose a path you can write (nothing was done yet)" in lines[0] and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before


def test_check_outputs_cases(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    check_outputs(files={"-o": folder / "new" / "deeper" / "m.engine", "--json": None}, dirs={"--repo": folder / "repo"})
    assert list(folder.iterdir()) == []  # nothing created
    with pytest.raises(InputError, match=r"-o .*/out: cannot be written: it is a folder, expected a file"):
        check_outputs(files={"-o": folder})
    (folder / "f").write_text("x")
    with pytest.raises(InputError, match=r"--repo .*/f: cannot be written: it is a file, expected a folder"):
        check_outputs(dirs={"--repo": folder / "f"})
    # Running as root makes chmod meaningless, so ask the permission check directly.
    monkeypatch.setattr(os, "access", lambda *args: False)
    with pytest.raises(InputError, match=r"--json .*/r.json: cannot be written: folder .*/out is not writable"):
        check_outputs(files={"--json": folder / "r.json"})
    with pytest.raises(InputError, match="it is read-only"):
        check_outputs(files={"--json": folder / "f"})


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_folder_that_refuses_new_files_is_refused_even_for_root():
    """os.access says yes to root on /proc; creating a file there fails, and so does the check."""
    with pytest.raises(InputError, match="folder /proc is not writable"):
        check_outputs(files={"-o": "/proc/m.engine"})
