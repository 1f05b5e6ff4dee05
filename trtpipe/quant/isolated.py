"""Running ONNX models in ONNX Runtime in a child process, so that a crash of ONNX Runtime is a result, not the end.

ONNX Runtime is native code: a model it mishandles can kill the process (seen: a segfault creating a session for
the FP16 ONNX of a torch-dynamo export). Fidelity measures every model in a child Python process; a child that dies
becomes an :class:`~trtpipe.errors.OnnxModelError` saying how it died, and the next model gets a fresh child.

The child is ``python -m trtpipe.quant.isolated``, talking pickle over its stdin/stdout, rather than a
``multiprocessing`` spawn: spawn re-runs the caller's main script in the child, which fails for a script read from
stdin and recurses for a script that calls the Python API without an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from trtpipe.errors import OnnxModelError, TrtpipeError

log = logging.getLogger("trtpipe")


class IsolatedRunner:
    """Runs :func:`trtpipe.quant.fidelity.first_output` for one image set in a child process.

    The child receives the images once and runs one model per :meth:`run`. When the images cannot be sent (a
    feeds hook that cannot be pickled or imported by the child, e.g. a lambda or a function of the main script),
    models run in this process instead, and a crash there ends it, as any native crash would; a warning says so.

    Args:
        images: an ImageSet (usually ``for_network``).
        indices: which of its images to run, in order.
        batch_size: images per batch (a fixed-batch network's own size wins).
        fp16_storage: see :func:`~trtpipe.quant.fidelity.first_output`.
    """

    def __init__(self, images, indices: np.ndarray, batch_size: int, fp16_storage: bool = True):
        self.images, self.indices, self.batch_size = images, np.asarray(indices), batch_size
        self.fp16_storage = fp16_storage
        self._process: subprocess.Popen | None = None
        try:
            # sys.path first and apart, so the child can import a feeds hook's module before unpickling the images
            self._setup = pickle.dumps(list(sys.path)) + pickle.dumps((images, self.indices, batch_size, fp16_storage))
            hook = getattr(getattr(images, "feeder", None), "hook", None)
            self.isolated = getattr(hook, "__module__", None) != "__main__"  # the child has another __main__
        except Exception:  # noqa: BLE001 - whatever pickling refuses, the fallback is the same
            self.isolated = False
        if not self.isolated:
            log.warning("the feeds hook cannot be sent to a child process: models run in this process (no crash isolation)")

    def run(self, path: str | Path, progress: str | None = None, all_outputs: bool = False):
        """The first output of the ONNX at ``path`` over the images, one row per image (``all_outputs``: {name: array}
        of every batched output, see :func:`~trtpipe.quant.fidelity.first_output`).

        Raises:
            OnnxModelError: ONNX Runtime refused or failed the model, or its process died (the message says how).
        """
        from trtpipe.quant.fidelity import first_output

        if not self.isolated:
            return first_output(path, self.images, self.indices, self.batch_size, progress, self.fp16_storage, all_outputs)
        if self._process is None and not self._start():
            return first_output(path, self.images, self.indices, self.batch_size, progress, self.fp16_storage, all_outputs)
        try:
            _send(self._process.stdin, (str(path), progress, all_outputs))
            status, value = pickle.load(self._process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            how = _death(self._stop(kill=True))
            raise OnnxModelError(
                f"{Path(path).name}: ONNX Runtime crashed while running it ({how}); trtpipe ran it in a child "
                "process and carries on",
                "the model may still build and run in TensorRT; report the crash to ONNX Runtime with the model",
            ) from None
        if status == "ok":
            return value
        if status == "trtpipe":
            raise OnnxModelError(*value)
        raise OnnxModelError(f"{Path(path).name}: {value}", "this looks like a trtpipe bug; please report it with the model")

    def _start(self) -> bool:
        """Starts the child and sends it the images; False (and a warning) when the child cannot take them."""
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the trtpipe this process runs, whatever is installed
        env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "trtpipe.quant.isolated"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
            )
        except OSError as exc:  # no interpreter to start (an embedded Python): measure here
            self.isolated = False
            log.warning("no child process for measuring (%s): models run in this process", exc)
            return False
        try:
            self._process.stdin.write(self._setup)
            self._process.stdin.flush()
            status, value = pickle.load(self._process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            status, value = "error", _death(self._stop(kill=True))
        if status == "ready":
            return True
        self._stop(kill=True)
        self.isolated = False
        log.warning("the measuring child process could not take the images (%s): models run in this process", value)
        return False

    def _stop(self, kill: bool = False) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        try:
            if not kill:
                _send(process.stdin, None)
            process.stdin.close()
        except OSError:
            pass
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        process.stdout.close()
        return code

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> "IsolatedRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _send(stream, message) -> None:
    pickle.dump(message, stream)
    stream.flush()


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"its process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"its process was killed by signal {-code}"
    return f"its process ended with exit code {code}"


def _serve() -> None:
    """The child: reads the images, then (path, progress label, all outputs) requests until None; answers on the original stdout."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library printing to stdout must not corrupt the replies
    requests = sys.stdin.buffer
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    sys.path[:] = list(dict.fromkeys(sys.path + pickle.load(requests)))
    try:
        images, indices, batch_size, fp16_storage = pickle.load(requests)
    except Exception as exc:  # noqa: BLE001 - e.g. a feeds hook whose module this process cannot import
        _send(replies, ("error", f"{type(exc).__name__}: {exc}"))
        return
    _send(replies, ("ready", None))
    from trtpipe.quant.fidelity import first_output

    while True:
        request = pickle.load(requests)
        if request is None:
            return
        path, progress, all_outputs = request
        try:
            _send(replies, ("ok", first_output(path, images, indices, batch_size, progress, fp16_storage, all_outputs)))
        except TrtpipeError as exc:
            _send(replies, ("trtpipe", (exc.message, exc.hint)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the model
            _send(replies, ("error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"))


if __name__ == "__main__":
    _serve()
