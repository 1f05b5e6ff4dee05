"""Reading ONNX files with errors a user can act on, and describing their inputs and outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from trtpipe.errors import InputError, OnnxModelError
from trtpipe.spec import TensorInfo

# ONNX TensorProto element types -> numpy dtype names (the ones vision models use).
_ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
}


def check_onnx_path(path: str | Path) -> Path:
    """Checks that ``path`` names an existing regular file, with a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file", "check the path; `trtpipe export NAME` writes engines/NAME.onnx")
    if path.is_dir():
        raise InputError(f"{path} is a directory, expected an .onnx file", "give the path of the .onnx file itself")
    return path


def load_onnx(path: str | Path, *, check: bool = True, load_weights: bool = True):
    """Loads an ONNX model, rejecting what TensorRT could never build with a message that says why.

    Args:
        path: the .onnx file (external data files are found beside it).
        check: run the ONNX checker (full check, as the parser would trip on the same faults).
        load_weights: load external data too; False reads only the graph (fast inspection).

    Returns:
        onnx.ModelProto.

    Raises:
        InputError: the path is missing or a directory.
        OnnxModelError: not ONNX, truncated or corrupt, fails the checker, or has an empty graph.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = check_onnx_path(path)
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise OnnxModelError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})",
            "the file is truncated, corrupt or not ONNX; export it again (trtpipe export NAME) or check the download",
        ) from None
    except FileNotFoundError as exc:  # external data file missing
        raise OnnxModelError(
            f"{path}: external data file is missing ({exc.filename})",
            "keep the .onnx and its external data files together in one folder",
        ) from None
    if not model.graph.node:
        raise OnnxModelError(
            f"{path}: the graph has no nodes (seen {len(model.graph.input)} inputs, "
            f"{len(model.graph.output)} outputs, 0 nodes)",
            "the export produced an empty graph; check the exporter's output and that the file is a model, not a stub",
        )
    if check:
        try:
            # Checking by path handles models over 2 GB with external data.
            onnx.checker.check_model(str(path) if load_weights else model, full_check=load_weights)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise OnnxModelError(
                f"{path}: fails the ONNX checker: {_first_line(exc)}",
                "fix the exporter (or run onnx.checker.check_model on it to see the full report) and export again",
            ) from None
    return model


def onnx_sha256(path: str | Path, model=None) -> str:
    """sha256 of the .onnx file and of any external data files it names, in a stable order."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes())
    if model is not None:
        locations = sorted(
            {
                entry.value
                for init in model.graph.initializer
                if init.data_location == 1  # EXTERNAL
                for entry in init.external_data
                if entry.key == "location"
            }
        )
        for location in locations:
            digest.update((path.parent / location).read_bytes())
    return digest.hexdigest()


def graph_io(model) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The model's real inputs (initializers excluded) and outputs, with -1 for symbolic dimensions."""
    initializers = {init.name for init in model.graph.initializer}

    def describe(value_info) -> TensorInfo:
        tensor_type = value_info.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim
        )
        return TensorInfo(value_info.name, dims, _ONNX_DTYPES.get(tensor_type.elem_type, f"onnx:{tensor_type.elem_type}"))

    inputs = tuple(describe(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(describe(v) for v in model.graph.output)
    return inputs, outputs


def opset_of(model) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
