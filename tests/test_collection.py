"""The default test run collects every test file.

pytest's default ``norecursedirs`` skips folders named ``build`` (and ``dist``, ``*.egg`` ...): the builder's
tests once lived in ``tests/build/`` and ``make test`` silently never ran them. This test lists every
``tests/**/test_*.py`` and asks pytest, with the project's own configuration, which files it collects.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_file_is_collected_by_the_default_run():
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py")}
    assert "tests/builder/test_builder.py" in on_disk  # the folder that was once skipped
    # -m "" lifts the marker filter only: a file of slow or gpu tests is still collected by the default run
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = {line.split("::", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    missing = sorted(on_disk - collected)
    assert not missing, f"test files the default run does not collect: {missing}"
