"""What an ONNX file says about how it is fed: its image input's fixed dimensions and dtype, and exporters' metadata.

Read by :func:`trtpipe.presets.resolve_spec` where no ``.preprocess.json`` says it all. Metadata keys read:

- Ultralytics (``model.export(format="onnx")``) writes ``metadata_props`` ``imgsz`` ("[640, 640]"), ``names``
  ("{0: 'person', ...}", a Python dict literal), ``task`` (detect, classify, segment, pose, obb), ``stride`` and
  ``author`` ("Ultralytics ..."): size, class names, task, and the ``yolo`` preset.
- PaddleOCR / RapidOCR / rapid_layout exports write ``character``: class names one a line (a layout detector's
  classes, a recognizer's dictionary; CTC recognizers add a blank first and a space last, matched to the output).
"""

from __future__ import annotations

import ast
from pathlib import Path

from trtpipe.errors import OnnxModelError
from trtpipe.presets import ModelFacts

# Ultralytics' task names -> trtpipe's (the others, pose/obb/segment, have no matching head: left unsaid)
_ULTRALYTICS_TASKS = {"detect": "detection", "classify": "classification"}
_FLOAT_DTYPES = ("float32", "float16", "float64", "bfloat16")
_CHANNEL_COUNTS = (1, 3, 4)  # an axis of this size, where the other candidate is not, is the channel axis


def read_facts(path: str | Path) -> ModelFacts:
    """Reads ``path``'s graph (not its weights) and returns what it says about its first network input.

    Raises:
        InputError: a missing or unreadable file (see ``trtpipe.onnx.load.load_onnx``).
        OnnxModelError: no network input.
    """
    from trtpipe.onnx.load import graph_io, load_onnx

    path = Path(path)
    model = load_onnx(path, check=False, load_weights=False)
    inputs, outputs = graph_io(model)
    if not inputs:
        raise OnnxModelError(f"{path.name}: no network input (every graph input is an initializer)",
                             "export the model with its image input")
    image = inputs[0]
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    layout, channels, height, width = _image_axes(image.shape)
    notes = []
    if channels is not None:
        notes.append(f"{channels} channel{'s' if channels > 1 else ''} {layout}")
    if height is not None and width is not None:
        notes.append(f"{height}x{width}")
    if image.dtype not in _FLOAT_DTYPES:
        notes.append(f"{image.dtype} input (takes pixels)")
    facts = dict(model=path.name.split(".")[0], input_name=image.name, inputs=len(inputs), dtype=image.dtype, layout=layout,
                 channels=channels, height=height, width=width)
    facts.update(_ultralytics(metadata, height, width, notes))
    if "labels" not in facts and "character" in metadata:
        labels = _character_labels(metadata["character"], outputs)
        if labels:
            facts.update(labels=labels, labels_from="metadata 'character'")
            notes.append(f"{len(labels)} class names (metadata 'character')")
    return ModelFacts(**facts, notes=tuple(notes))


def _image_axes(shape: tuple[int, ...]) -> tuple[str | None, int | None, int | None, int | None]:
    """(layout, channels, height, width) a 4-D input's fixed dims say (-1: dynamic); None where they do not."""
    if len(shape) != 4:
        return None, None, None, None
    _, a, b, c = shape
    if a in _CHANNEL_COUNTS and c not in _CHANNEL_COUNTS:  # (N, C, H, W), the PyTorch and Paddle habit
        layout = "NCHW"
    elif c in _CHANNEL_COUNTS and a not in _CHANNEL_COUNTS:  # (N, H, W, C), TensorFlow's and Keras'
        layout = "NHWC"
    elif a > 0 and (c <= 0 or a <= c):  # the fixed (or the smaller) of the two is the channel axis: (N, 6, 64, 64)
        layout = "NCHW"
    elif c > 0:
        layout = "NHWC"
    else:
        return None, None, None, None  # both dynamic: the shape does not say
    channels, height, width = (a, b, c) if layout == "NCHW" else (c, a, b)
    positive = lambda d: d if d > 0 else None  # noqa: E731
    return layout, positive(channels), positive(height), positive(width)


def _ultralytics(metadata: dict[str, str], height: int | None, width: int | None, notes: list[str]) -> dict:
    """Size (where the input's is dynamic), class names, task and the yolo preset from Ultralytics' metadata."""
    if "Ultralytics" not in metadata.get("author", "") and not {"imgsz", "names", "stride"} <= set(metadata):
        return {}
    found: dict = {"family": "yolo"}
    notes.append("Ultralytics metadata")
    size = _literal(metadata.get("imgsz"))
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        if height is None or width is None:
            found.update(height=height or size[0], width=width or size[1], size_from="metadata imgsz")
    names = _literal(metadata.get("names"))
    if isinstance(names, dict) and names and all(isinstance(k, int) for k in names):
        found.update(labels=tuple(str(names.get(i, i)) for i in range(max(names) + 1)), labels_from="metadata 'names'")
        notes.append(f"{len(names)} class names (metadata 'names')")
    task = _ULTRALYTICS_TASKS.get(metadata.get("task", ""))
    if task:
        found["task"] = task
    return found


def _literal(text: str | None):
    """A Python literal from metadata text (Ultralytics writes repr()s), or None where it is not one."""
    if not text:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _character_labels(text: str, outputs) -> tuple[str, ...] | None:
    """PaddleOCR-style ``character`` lines as class names; a CTC recognizer's blank (first) and space (last) added
    where the last output's class axis is one or two longer than the list."""
    names = [line for line in text.split("\n")]
    while names and names[-1] == "":
        names.pop()
    if not names:
        return None
    classes = outputs[-1].shape[-1] if outputs and outputs[-1].shape else -1
    if classes == len(names) + 2:  # PaddleOCR CTCLabelDecode: ["blank"] + dictionary + [" "] (use_space_char)
        names = ["blank", *names, " "]
    elif classes == len(names) + 1:
        names = ["blank", *names]
    return tuple(names)


