"""The TrtpipeError family: every message names what was seen, what was expected, and ends with a Hint."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator


class TrtpipeError(Exception):
    """An error the user can fix; the CLI prints it as one line and exits with code 2.

    Args:
        message: what went wrong, naming the file or tensor, the value seen and the value expected.
        hint: how to fix it; appended as ``Hint: ...``.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str):
        self.message = message.rstrip(". ")
        self.hint = hint
        super().__init__(f"{self.message}. Hint: {hint}")


class InputError(TrtpipeError):
    """A file, folder, image or argument given by the user is missing or malformed."""


class ConfigError(TrtpipeError):
    """An invalid combination of options, rejected when the configuration is built."""


class OnnxModelError(TrtpipeError):
    """An ONNX file cannot be read, fails the checker, or has a graph trtpipe cannot handle."""


class DependencyError(TrtpipeError):
    """An optional dependency (TensorRT, cuda-python, torch, ...) is not installed."""


class BuildError(TrtpipeError):
    """TensorRT could not parse the network or build the engine."""


class EngineMismatchError(TrtpipeError):
    """An engine does not fit this machine (other TensorRT version or GPU) or its sidecar."""


class CudaError(TrtpipeError):
    """A CUDA runtime call failed."""


class ModelNotFoundError(TrtpipeError):
    """A model name is not in the zoo."""


class WeightsError(TrtpipeError):
    """Pretrained weights could not be loaded (no network, unknown checkpoint)."""


# -- how a message names an option --------------------------------------------------------------
# The library is called from Python and from the CLI; a Hint must name the option the user can
# actually change: ``backend="onnxruntime"`` in Python code, ``--backend onnxruntime`` on a command line.
_OPTION_SPELLING: contextvars.ContextVar[str] = contextvars.ContextVar("trtpipe_option_spelling", default="python")


def option(name: str, value: object = None) -> str:
    """An option as the user writes it here: ``backend="onnxruntime"`` (Python) or ``--backend onnxruntime`` (CLI).

    Args:
        name: the Python keyword argument (``cuda_graph``); the CLI spelling replaces ``_`` with ``-``.
        value: the value to show; None shows the name alone (``--cuda-graph`` / ``cuda_graph``).
    """
    if _OPTION_SPELLING.get() == "cli":
        flag = "--" + name.replace("_", "-")
        return flag if value is None or value is True else f"{flag} {value}"
    if value is None:
        return name
    return f'{name}="{value}"' if isinstance(value, str) else f"{name}={value!r}"


@contextlib.contextmanager
def command_line_options() -> Iterator[None]:
    """Inside the block, :func:`option` spells options as command-line flags (the CLI wraps every verb in it)."""
    token = _OPTION_SPELLING.set("cli")
    try:
        yield
    finally:
        _OPTION_SPELLING.reset(token)
