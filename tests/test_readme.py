"""Every command in README.md runs, as written, in a temporary copy of the repository.

The commands are read from the README when the test runs, so a README edit is tested by the next run.
All rules live in this file's first section:

* **What a command is.** Every line of a fenced shell block (a block not marked ``python`` or ``text`` with
  at least one line that starts with a program in PROGRAMS; comment lines and blank lines aside, a trailing
  ``# comment`` dropped), every Python code block (run as one script), and every
  inline code span in a table row whose first word is a program in PROGRAMS. Inline code in running text
  names things (`trtpipe serve`, `make`) rather than giving commands, so it is not extracted.
* **Optional parts.** ``[--flag value]`` (a bracket group after a space) is optional: the command runs without
  its optional groups, and once more with the first alternative of each (``[--a 1 | --b X]`` -> ``--a 1``).
  A placeholder (an upper-case word such as PATH or DIR that is not a make variable, or ``...``) cannot run:
  an optional alternative with one is left out; a command with one fails the test unless NOT_RUN names it.
* **Order.** Commands run in README order in one workspace (so ``make engine`` makes what ``trtpipe infer``
  reads); a command that fails is retried after the others, for inputs made further down the README;
  commands in LAST (which delete what others need) run at the end; a BACKGROUND command (a server) is
  started, awaited, and stopped once everything else has run.
* **Not run** (NOT_RUN, each with its reason, each reported as a skipped test), **refused here**
  (NEEDS_TENSORRT_GPU: without TensorRT on a GPU each must exit 2 with the expected message and a Hint),
  **filled** (FILLED: a placeholder such as DIR given a concrete value of its kind, with the reason) and
  **adjusted** (ADJUSTED: only timed-run lengths and port numbers, each with its reason, each change printed).
* **Continued lines.** A shell line ending in a backslash continues on the next; the command is the lines joined.
* **Small inputs.** calib_data/ is filled with CALIB_IMAGES images before anything runs, so ``make calib-data``
  (which fills it only when empty) leaves it be and calibration takes seconds, not minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# ---------------------------------------------------------------------------------------------
# The rules (one place)
# ---------------------------------------------------------------------------------------------

PROGRAMS = ("make", "trtpipe", "python", "pip", "docker")
CALIB_IMAGES = 32  # the fewest INT8 builds take (a quarter, 8, held back for the fidelity check); costs grow with it

#: regex on the command as written -> why it is not run here.
NOT_RUN = {
    r"^make test$": "the test suite itself (this test is part of it: running it here would recurse)",
    r"^make coverage$": "the model-coverage sweep, about 20 minutes (its quick subset runs in tests/coverage)",
    r"^make perf$": "the benchmarks in tests/perf, minutes long (make perf)",
    r"^make bench\b": "a benchmark sweep over three precisions, three batch sizes and three backends (minutes); "
                      "its steps (build, bench, report) run here one by one from the CLI examples",
    r"^pip install\b": "installs packages into the environment the tests run in",
}

#: regex -> (what the refusal must say, why) for commands that need TensorRT (not TensorRT-RTX) on an NVIDIA GPU.
#: On a machine without both, each must be refused cleanly (exit 2, that text, a Hint, no traceback); on a
#: machine with both, it runs like any other command.
NEEDS_TENSORRT_GPU = {
    r"^trtpipe bench engines/\S+\.engine\b(?!.*(--backend|--simulate))": (r"needs an NVIDIA GPU",
                                                                        "times a TensorRT engine on the GPU"),
    r"^trtpipe triton-export engines/\S+\.engine\b": (r"no stock Triton can load this engine",
                                                      "engines built here are TensorRT-RTX engines, which Triton's "
                                                      "tensorrt_plan backend cannot load"),
}

#: regex on the command -> (replacement, why). Only lengths of timed runs and port numbers are changed.
ADJUSTED = {
    r"--duration \S+": ("--duration 0.3s", "a timed run's length does not change what it does; 3 s per row would "
                                           "add a minute to every test run"),
    r"^(trtpipe bench (?!.*--duration).*)$": (r"\1 --duration 0.3s", "as above, for a bench that takes the default 3 s"),
    r"--http-port 18800\b": ("--http-port {http_port}", "the README's ports may be taken by another run on this machine"),
    r"--grpc-port 18801\b": ("--grpc-port {grpc_port}", "as above"),
    r"--url 127\.0\.0\.1:18800\b": ("--url 127.0.0.1:{http_port}", "as above"),
    r"--url 127\.0\.0\.1:18801\b": ("--url 127.0.0.1:{grpc_port}", "as above"),
    r"--requests 500\b": ("--requests 20", "a load test's length does not change what it does; 500 requests at each of "
                                          "8 concurrency levels would add minutes to every test run"),
}

#: regex on the command -> (replacement, why): placeholders the README writes for "your folder/file" (an upper-case
#: word such as DIR), filled with a concrete value of the same kind so the command runs. Only placeholders.
FILLED = {
    r"^(trtpipe fidelity .*)--images DIR\b": (r"\1--images samples/images/", "fidelity's evaluation images: the "
                                                                           "README's three sample photos"),
}

#: regex on the command -> URL (after ADJUSTED) that answers once the server is ready.
BACKGROUND = {r"^trtpipe serve\b": "http://127.0.0.1:{http_port}/v2/health/ready"}

#: regex on the command: run after all others (they delete what other commands read).
LAST = (r"^make (clean|distclean)$",)

PLACEHOLDER = re.compile(r"(?<![\w.])(?:[A-Z][A-Z0-9_]{1,}(?![=\w])|\.\.\.)")
OPTIONAL = re.compile(r"(?<=\s)\[([^\[\]]*)\]")

# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadmeCommand:
    """One command of the README: shell text (or a Python script) and where it stands."""

    text: str  # as written (optional groups included)
    line: int  # README line number, 1-based
    python: bool = False  # a Python code block

    @property
    def variants(self) -> tuple[str, ...]:
        """What runs: the command without its optional groups, then with the first alternative of each (if any)."""
        if self.python:
            return (self.text,)
        base = _squash(OPTIONAL.sub("", self.text))
        firsts = lambda m: m.group(1).split("|")[0].strip() if not PLACEHOLDER.search(m.group(1).split("|")[0]) else ""  # noqa: E731
        full = _squash(OPTIONAL.sub(firsts, self.text))
        return (base,) if full == base else (base, full)

    @property
    def label(self) -> str:
        return f"README:{self.line}: " + (f"python block: {self.text.splitlines()[0]} ..." if self.python else self.text)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def extract_commands(markdown: str) -> list[ReadmeCommand]:
    """The README's commands in document order (see the module docstring for the rules)."""
    commands: list[ReadmeCommand] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence:
            language, start, body = fence.group(1).lower(), index + 1, []
            index += 1
            while index < len(lines) and not re.match(r"^\s*```\s*$", lines[index]):
                body.append(lines[index])
                index += 1
            shell = any(text.split()[:1] and text.split()[0] in PROGRAMS for text in body)
            if language == "python":
                commands.append(ReadmeCommand("\n".join(body), start + 1, python=True))
            elif shell and language not in ("text", "txt"):
                offset = 0
                while offset < len(body):
                    first, text = offset, re.sub(r"\s+#\s.*$", "", body[offset]).strip()
                    while text.endswith("\\") and offset + 1 < len(body):  # a command continued on the next line
                        offset += 1
                        text = text[:-1] + " " + re.sub(r"\s+#\s.*$", "", body[offset]).strip()
                    if text and not text.startswith("#"):
                        commands.append(ReadmeCommand(_squash(text), start + first + 1))
                    offset += 1
        elif line.lstrip().startswith("|"):
            for span in re.findall(r"`([^`]+)`", line):
                span = span.replace("\\|", "|")
                if span.split()[0] in PROGRAMS:
                    commands.append(ReadmeCommand(_squash(span), index + 1))
        index += 1
    return commands


def _matches(rules, command: str):
    return next((value for pattern, value in (rules.items() if isinstance(rules, dict) else ((r, r) for r in rules))
                 if re.search(pattern, command)), None)


def not_run_reason(command: ReadmeCommand) -> str | None:
    return None if command.python else _matches(NOT_RUN, command.text)


def fill(text: str) -> tuple[str, list[str]]:
    """The command with FILLED's placeholders replaced, and one line per change saying what and why."""
    changes = []
    for pattern, (replacement, why) in FILLED.items():
        new = re.sub(pattern, replacement, text)
        if new != text:
            changes.append(f"filled {text!r} -> {new!r}: {why}")
            text = new
    return text, changes


def adjust(text: str, ports: dict[str, int]) -> tuple[str, list[str]]:
    """The command after ADJUSTED, and one line per change saying what and why."""
    changes = []
    for pattern, (replacement, why) in ADJUSTED.items():
        if not re.search(pattern, text):
            continue
        new = re.sub(pattern, replacement.format(**ports) if "{" in replacement else replacement, text)
        if new != text:
            changes.append(f"adjusted {text!r} -> {new!r}: {why}")
            text = new
    return text, changes


# ---------------------------------------------------------------------------------------------
# Tests of the rules themselves (fast)
# ---------------------------------------------------------------------------------------------

SAMPLE = """
Some text with `trtpipe serve` in it (a name, not a command).

```
make engine MODEL=m    # builds it
# a comment line
trtpipe infer x.engine a.jpg [--backend onnxruntime] [--json out.json]
trtpipe build m.onnx --precision int8 \\
    [--calib-method percentile|entropy] --images calib/   # continued
```

| verb | example |
|---|---|
| `build` | `trtpipe build m.onnx --precision fp32` or an `.engine` |
| x | `trtpipe export m -o m.onnx [--weights auto\\|pretrained\\|PATH] [--opset 17]` |
| y | `trtpipe build m.onnx [--auto-keep 6 \\| --keep-fp NODE,...]` |

```python
print("hi")
```
"""


def test_extraction_rules():
    commands = extract_commands(SAMPLE)
    assert [c.text for c in commands if not c.python] == [
        "make engine MODEL=m",
        "trtpipe infer x.engine a.jpg [--backend onnxruntime] [--json out.json]",
        "trtpipe build m.onnx --precision int8 [--calib-method percentile|entropy] --images calib/",
        "trtpipe build m.onnx --precision fp32",
        "trtpipe export m -o m.onnx [--weights auto|pretrained|PATH] [--opset 17]",
        "trtpipe build m.onnx [--auto-keep 6 | --keep-fp NODE,...]",
    ]
    assert commands[-1].python and commands[-1].text == 'print("hi")'
    assert commands[1].variants == ("trtpipe infer x.engine a.jpg",
                                    "trtpipe infer x.engine a.jpg --backend onnxruntime --json out.json")
    assert commands[2].line == commands[1].line + 1 and commands[2].variants[1] == (
        "trtpipe build m.onnx --precision int8 --calib-method percentile --images calib/")
    assert commands[4].variants[1] == "trtpipe export m -o m.onnx --weights auto --opset 17"
    assert commands[5].variants == ("trtpipe build m.onnx", "trtpipe build m.onnx --auto-keep 6")
    assert fill("trtpipe fidelity m.onnx --precisions fp32,int8 --images DIR")[0].endswith("--images samples/images/")
    assert not PLACEHOLDER.search("make engine MODEL=m PRECISION=int8") and PLACEHOLDER.search("--images DIR")
    assert adjust("trtpipe bench m.onnx --batch 1", {})[0] == "trtpipe bench m.onnx --batch 1 --duration 0.3s"
    assert adjust("trtpipe bench m.onnx --duration 3s", {})[0] == "trtpipe bench m.onnx --duration 0.3s"


def test_every_rule_still_matches_a_readme_command():
    """A rule for a command the README no longer has is stale: remove it, so the rules stay a true list."""
    texts = [c.text for c in extract_commands(README.read_text()) if not c.python]
    for pattern in [*NOT_RUN, *NEEDS_TENSORRT_GPU, *ADJUSTED, *FILLED, *BACKGROUND, *LAST]:
        assert any(re.search(pattern, t) for t in texts), f"rule {pattern!r} matches no README command"


_COMMANDS = extract_commands(README.read_text())


@pytest.mark.parametrize("command", [c for c in _COMMANDS if not_run_reason(c)], ids=lambda c: c.text)
def test_readme_command_not_run_here(command):
    pytest.skip(f"{command.label}: not run here: {not_run_reason(command)}")


# ---------------------------------------------------------------------------------------------
# Running them
# ---------------------------------------------------------------------------------------------


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    ports: dict[str, int]
    log: list[str] = field(default_factory=list)

    def run(self, text: str, python: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = [str(self.root / ".venv" / "bin" / "python"), "-c", text] if python else ["bash", "-c", text]
        return subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    """A copy of the repository's files (not its generated ones) with the shared .venv linked in."""
    root = tmp_path_factory.mktemp("readme") / "repo"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout ({listed.stderr.strip()}): cannot tell the repository's files from generated ones")
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    venv = (ROOT / ".venv").resolve()
    if not (venv / "bin" / "trtpipe").exists():
        pytest.skip(f"no {ROOT / '.venv'} with trtpipe installed (make venv)")
    (root / ".venv").symlink_to(venv)
    # make must never rebuild the shared .venv: pyproject.toml is its prerequisite, so it is dated before it.
    os.utime(root / "pyproject.toml", (0, 0))
    guard = subprocess.run(["make", "-q", ".venv/bin/.installed"], cwd=root, capture_output=True)
    assert guard.returncode == 0, "make would rebuild .venv in the copy; refusing to run README commands"
    env = {**os.environ, "PYTHONPATH": str(root), "PATH": f"{root / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
           "MPLBACKEND": "Agg"}
    env.pop("VIRTUAL_ENV", None)
    work = Workspace(root, env, {"http_port": _free_port(), "grpc_port": _free_port()})
    filled = work.run(f"trtpipe calib-data calib_data --count {CALIB_IMAGES}")
    assert filled.returncode == 0, filled.stderr
    return work


def _tensorrt_gpu_here() -> bool:
    """True when this machine has a usable NVIDIA GPU and TensorRT (TensorRT-RTX alone does not count)."""
    from trtpipe.flavors import installed_flavors
    from trtpipe.testing import gpu_unavailable_reason

    return gpu_unavailable_reason() is None and any(f.name == "tensorrt" for f in installed_flavors())


def _refusal_problem(step, done) -> str | None:
    """Why ``done`` is not the clean refusal NEEDS_TENSORRT_GPU expects of ``step``; None when it is."""
    expected, why = _matches(NEEDS_TENSORRT_GPU, step.text)
    output = done.stdout + done.stderr
    if done.returncode == 2 and re.search(expected, output) and "Hint:" in output and "Traceback" not in output:
        return None
    return (f"{step.command.label}\n  ran: {step.text}\n  needs TensorRT on a GPU ({why}), so here it must exit 2 "
            f"saying {expected!r} with a Hint; it exited {done.returncode}: {output.strip()[-800:]}")


@dataclass
class _Step:
    command: ReadmeCommand
    text: str  # the variant to run, after ADJUSTED


def _steps(workspace: Workspace) -> tuple[list[_Step], list[_Step], list[str]]:
    """(ordinary steps, LAST steps, failures found before running: placeholders)."""
    ordinary, last, problems = [], [], []
    for command in _COMMANDS:
        if not_run_reason(command):
            continue
        for variant in command.variants:
            filled, fills = (variant, []) if command.python else fill(variant)
            if not command.python and PLACEHOLDER.search(filled):
                problems.append(f"{command.label}: has a placeholder ({PLACEHOLDER.search(filled).group(0)}); "
                                "write a runnable example, or add a NOT_RUN or FILLED rule with the reason")
                continue
            text, changes = (filled, []) if command.python else adjust(filled, workspace.ports)
            workspace.log.extend(fills + changes)
            step = _Step(command, text)
            (last if not command.python and _matches(LAST, variant) else ordinary).append(step)
    return ordinary, last, problems


def _start_background(workspace: Workspace, step: _Step, url: str) -> subprocess.Popen:
    process = subprocess.Popen(["bash", "-c", f"exec {step.text}"], cwd=workspace.root, env=workspace.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(1)
    output = process.communicate(timeout=30)[0] if process.poll() is not None else "(still starting)"
    _stop(process)
    raise AssertionError(f"{step.command.label}: did not become ready at {url}: {output[-2000:]}")


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)  # the server's own Ctrl-C path; its session holds only its children
        try:
            return process.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.communicate()[0]


def test_every_readme_command_runs(workspace, capsys):
    ordinary, last, problems = _steps(workspace)
    tensorrt_gpu = _tensorrt_gpu_here()
    servers: list[subprocess.Popen] = []
    failures: dict[int, str] = {}
    seconds: dict[str, float] = {}
    pending = list(range(len(ordinary)))
    try:
        while pending:  # a pass over what is left; stop when a pass makes no progress
            failed = []
            for index in pending:
                step = ordinary[index]
                url = _matches(BACKGROUND, step.text)
                if url:
                    try:
                        servers.append(_start_background(workspace, step, url.format(**workspace.ports)))
                        continue
                    except AssertionError as exc:
                        failures[index] = str(exc)
                        failed.append(index)
                        continue
                started = time.perf_counter()
                done = workspace.run(step.text, python=step.command.python)
                seconds[step.text[:90]] = time.perf_counter() - started
                if not step.command.python and _matches(NEEDS_TENSORRT_GPU, step.text) and not tensorrt_gpu:
                    refusal = _refusal_problem(step, done)
                    if refusal:
                        failures[index] = refusal
                        failed.append(index)
                    else:
                        failures.pop(index, None)
                        workspace.log.append(f"{step.text!r}: refused cleanly here, as it must be without TensorRT on a GPU")
                elif done.returncode != 0:
                    failures[index] = f"{step.command.label}\n  ran: {step.text[:300]}\n  exit {done.returncode}: " \
                                      f"{(done.stdout.strip()[-700:] + chr(10) + done.stderr.strip()[-1500:]).strip()}"
                    failed.append(index)
                else:
                    failures.pop(index, None)
            if len(failed) == len(pending):
                break
            pending = failed
        for server in servers:
            _stop(server)
        servers.clear()
        for step in last:
            done = workspace.run(step.text)
            if done.returncode != 0:
                problems.append(f"{step.command.label}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
    finally:
        for server in servers:
            _stop(server)
    with capsys.disabled():
        for change in dict.fromkeys(workspace.log):  # once each, in order
            print(f"\n  {change}", end="")
        slowest = sorted(seconds.items(), key=lambda item: -item[1])[:5]
        print("\n  slowest README commands: " + "; ".join(f"{text} {s:.1f} s" for text, s in slowest), end="")
    assert not (problems or failures), "README commands that do not run as written:\n" + "\n".join(
        [*problems, *failures.values()])
