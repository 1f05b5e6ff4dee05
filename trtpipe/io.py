"""File helpers: atomic writes (temp file + rename), output paths checked before the work, content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from trtpipe.errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` only if the block succeeds.

    An exception or Ctrl-C inside the block removes the temporary file, so a reader never sees
    a half-written engine, ONNX or sidecar and what was at ``path`` before is kept.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def removed_on_error(
    folders: "tuple[str | Path, ...]", patterns: tuple[str, ...], *, keep_on: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Removes the files matching ``patterns`` in ``folders`` that the block created, if the block raises.

    For verbs that write intermediate files (a rewritten ``.fp16.onnx``/``.int8.onnx``, a calibration cache, a
    fused ONNX) on the way to their output: a refusal after the rewrite leaves the folder as it was. Files that
    existed before the block are never touched (a rebuild's own earlier files, the user's), whatever happens.

    Args:
        folders: where to look (missing ones are skipped).
        patterns: glob patterns of the intermediate files, e.g. ``("mobilenetv2*.onnx",)``.
        keep_on: exceptions after which the new files are kept (a documented partial result).
    """
    def matching() -> set[Path]:
        found: set[Path] = set()
        for folder in {Path(f) for f in folders}:
            if folder.is_dir():
                for pattern in patterns:
                    found.update(p for p in folder.glob(pattern) if p.is_file())
        return found

    before = matching()
    try:
        yield
    except keep_on:
        raise
    except BaseException:
        for path in matching() - before:
            path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def ensure_writable_dir(directory: str | Path) -> Path:
    """Creates ``directory`` if needed and checks it can be written, with a clear error otherwise."""
    directory = Path(directory) if str(directory) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(
            f"output directory {directory} exists and is not a directory", "choose another output path"
        ) from None
    except OSError as exc:
        raise InputError(
            f"cannot create output directory {directory} ({exc.strerror})",
            "choose a directory you can write (the -o option), or create it first",
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(
            f"output directory {directory} is not writable",
            "choose a directory you can write, or fix its permissions",
        )
    return directory


def check_outputs(
    *, files: Mapping[str, str | Path | None] | None = None, dirs: Mapping[str, str | Path | None] | None = None
) -> None:
    """Checks, before any long work, that every output a verb will write can be written; creates nothing.

    Called first thing in each verb's ``run``: a calibration or benchmark that runs for minutes must not
    end in a traceback because ``-o`` names a folder that cannot be written, losing what it measured.

    Args:
        files: option (as the user typed it, e.g. ``"-o"``, ``"--json"``) -> file path; None entries are skipped.
            A file path must not be a directory, an existing file must be writable, and the nearest existing
            folder above it must be a writable folder (missing folders are created by the writer later).
        dirs: option -> folder path; None entries are skipped. The folder, or the nearest existing one above
            it, must be a writable folder.

    Raises:
        InputError: naming the option, the path and what is in the way.
    """
    for option, path in (files or {}).items():
        if path is not None:
            _check_output(Path(path), option, directory=False)
    for option, path in (dirs or {}).items():
        if path is not None:
            _check_output(Path(path), option, directory=True)


def _check_output(path: Path, option: str, *, directory: bool) -> None:
    def refuse(why: str) -> InputError:
        return InputError(f"{option} {path}: cannot be written: {why}", "choose a path you can write (nothing was done yet)")

    if path.exists():
        if path.is_dir() != directory:
            raise refuse("it is a folder, expected a file" if path.is_dir() else "it is a file, expected a folder")
        if not os.access(path, os.W_OK | (os.X_OK if directory else 0)):
            raise refuse("it is read-only")
        if directory:
            return
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise refuse(f"{folder} is not a directory (it is a file)")
    if not os.access(folder, os.W_OK | os.X_OK) or not _can_create_in(folder):
        raise refuse(f"folder {folder} is not writable")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: os.access says yes to root on read-only mounts (/sys, /proc)."""
    try:
        with tempfile.TemporaryFile(dir=folder):  # O_TMPFILE where the filesystem has it: no name is ever visible
            return True
    except OSError:
        return False


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()
