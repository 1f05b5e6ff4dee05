"""Weight-stripped and refittable engines: new weights from an ONNX, without a rebuild.

``build --stripWeights`` writes a plan without its refittable weights (TensorRT's ``STRIP_PLAN`` with
``REFIT_IDENTICAL``, or with ``--refit`` ``REFIT``); ``build --refit`` keeps them but lets them be replaced. Both fill
in from an ONNX with the engine's graph through TensorRT's ``OnnxParserRefitter``, which matches weights by their
ONNX initializer names:

- at load: ``TensorRTEngine(path, weights=ONNX)`` / ``load_engine`` / ``Pipeline.from_engine(path, weights=ONNX)``
  refit the deserialized engine in memory;
- ``trtpipe refit ENGINE --onnx MODEL.onnx [-o OUT]`` writes the refitted plan (with its weights) and its sidecar.

The ONNX must have the engine's graph: the sidecar keeps the network ONNX's structure hash
(``trtpipe.onnx.structure``), and an ONNX of another graph is refused before TensorRT sees it, naming the first
tensor that differs. Refitting needs the engine deserialized, so a GPU (measured: TensorRT-RTX 1.7 cannot
deserialize, hence cannot refit, on a machine without one).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from trtpipe.errors import ConfigError, EngineMismatchError, InputError
from trtpipe.spec import EngineSidecar


def refit_command(engine: str | Path) -> str:
    """The command that makes a runnable plan of weight-stripped ``engine`` (how hints name it)."""
    engine = Path(engine)
    return f"trtpipe refit {engine} --onnx MODEL.onnx -o {engine.with_name(engine.stem + '_refitted' + engine.suffix)}"


def check_profile_index(sidecar: EngineSidecar, engine: str | Path, profile: int | None) -> int | None:
    """``profile`` (``--useProfile N``) when the engine has it, else a ConfigError listing its profiles."""
    if profile is None:
        return None
    count = len(sidecar.profiles) or 1
    if not 0 <= int(profile) < count:
        raise ConfigError(
            f"--useProfile {profile}: engine {engine} has {count} optimization profile(s) (0..{count - 1})",
            f"pick one of 0..{count - 1} (trtpipe inspect {engine} lists them), or leave it out to pick by shape",
        )
    return int(profile)


def check_weights_for(sidecar: EngineSidecar, engine: str | Path, weights: str | Path | None) -> Path | None:
    """Checks, before deserializing, that ``weights`` fits the engine; returns it as a Path (None: no refit).

    Raises:
        InputError: a weight-stripped engine and no ``weights`` (the Hint is the ``trtpipe refit`` command), a missing
            file, or an ONNX of another graph (naming the first tensor that differs).
        ConfigError: ``weights`` for an engine built without ``--refit``/``--stripWeights``.
    """
    if weights is None:
        if sidecar.weights_stripped:
            raise InputError(
                f"engine {engine} is weight-stripped (built with --stripWeights): it has no weights to run with",
                f"give the ONNX that holds them (weights=MODEL.onnx; trtpipe infer/bench --refit-from MODEL.onnx), or write "
                f"a plan with its weights: {refit_command(engine)}",
            )
        return None
    if not sidecar.refittable:
        raise ConfigError(
            f"weights={weights} for engine {engine}, which was built without --refit or --stripWeights: its weights "
            "cannot be replaced",
            "rebuild it refittable: trtpipe build MODEL.onnx --refit (or --stripWeights for a plan without weights)",
        )
    weights = Path(weights)
    check_same_graph(sidecar, engine, weights)
    return weights


def check_same_graph(sidecar: EngineSidecar, engine: str | Path, onnx_path: Path):
    """Raises InputError unless ``onnx_path`` has the graph of the engine's network ONNX (structure hash); returns
    the loaded model."""
    from trtpipe.onnx.structure import first_difference, graph_structure, graph_structure_sha256, load_structure_model

    model = load_structure_model(onnx_path)
    if sidecar.graph_sha256 is None or graph_structure_sha256(model) == sidecar.graph_sha256:
        return model
    differs = None
    recorded = Path(sidecar.network_onnx_path or sidecar.onnx_path)
    if recorded.is_file():  # the ONNX the engine was parsed from, when still here, names the tensor
        built = load_structure_model(recorded)
        if graph_structure_sha256(built) == sidecar.graph_sha256:
            differs = first_difference(graph_structure(built), graph_structure(model))
    precision = (f" (the engine is {sidecar.precision}: its network ONNX is {recorded.name}, and the new weights must "
                 "come in that precision)" if sidecar.network_onnx_path not in (None, sidecar.onnx_path) else "")
    raise InputError(
        f"{onnx_path} does not have the graph engine {engine} was built from: "
        f"{differs or 'its structure hash differs (the engine ONNX is not here to name the tensor)'}{precision}",
        "refit with an ONNX of the same graph and new weights (same export, same opset and options), or rebuild: "
        f"trtpipe build {onnx_path} ...",
    )


def refit_engine(flavor, engine, logger, onnx_path: Path, engine_path: Path) -> float:
    """Refits a deserialized ``engine`` from ``onnx_path`` with ``OnnxParserRefitter``; returns the seconds it took.

    Raises:
        EngineMismatchError: TensorRT refused the weights (their names, the errors it logged) or left some missing.
    """
    trt = flavor.module
    started = time.perf_counter()
    with logger.capture_errors() as errors:
        refitter = trt.Refitter(engine, logger)
        parser = trt.OnnxParserRefitter(refitter, logger)
        parsed = parser.refit_from_file(str(onnx_path))
        said = [parser.get_error(i).desc() for i in range(parser.num_errors)] + list(errors)
        if not parsed:
            raise EngineMismatchError(
                f"{flavor.label} could not take the weights of {onnx_path} for {engine_path}: {'; '.join(said[:3]) or 'no message'}",
                "refit with an ONNX exported like the one the engine was built from (same initializer names, shapes "
                "and dtypes)",
            )
        missing = list(refitter.get_missing_weights())
        if missing or not refitter.refit_cuda_engine():
            raise EngineMismatchError(
                f"{flavor.label} could not refit {engine_path} from {onnx_path}"
                + (f": weights {missing[:5]} are missing" if missing else f": {'; '.join(list(errors)[-2:]) or 'no message'}"),
                "give an ONNX that holds every weight of the engine's graph",
            )
    return time.perf_counter() - started


def _weights_label(onnx_path: Path) -> str:
    """What the new weights are, from the preprocess spec beside their ONNX (``pretrained:...``, ``random`` ...);
    "unknown" without one: the engine's old label no longer applies."""
    from trtpipe.spec import PreprocessSpec, preprocess_path_for

    spec_path = preprocess_path_for(onnx_path)
    return PreprocessSpec.load(spec_path).weights if spec_path.is_file() else "unknown"


@dataclasses.dataclass(frozen=True)
class RefitResult:
    """What :func:`refit_plan` wrote."""

    engine_path: Path
    sidecar: EngineSidecar
    seconds: float  # the refit itself (Refitter + OnnxParserRefitter), not deserializing or writing

    def summary(self) -> str:
        return (f"refitted {self.engine_path} ({self.sidecar.engine_bytes / 1e6:.1f} MB) from {self.sidecar.weights_onnx} "
                f"in {self.seconds * 1e3:.1f} ms with {self.sidecar.flavor_label}")


def refit_plan(engine_path: str | Path, onnx_path: str | Path, output: str | Path | None = None, *,
               flavor=None) -> RefitResult:
    """Refits ``engine_path`` with the weights of ``onnx_path`` and writes the plan with its weights to ``output``.

    The written plan keeps the weights (``SerializationFlag.EXCLUDE_WEIGHTS`` cleared) and stays refittable where the
    flavour can say so (``INCLUDE_REFIT``, TensorRT 11 and RTX; a TensorRT 10 refitted plan is no longer refittable,
    and its sidecar says so). The sidecar is updated: engine sha256 and size, weights sha256, the ONNX they came from.

    Args:
        engine_path: a refittable or weight-stripped engine with its sidecar.
        onnx_path: an ONNX with the engine's graph and the weights to put in.
        output: where to write the plan (and ``OUTPUT.json``). Defaults to ``engine_path`` itself, replaced atomically.
        flavor: the TensorRT flavour (tests pass a simulated one). Defaults to the one that built the engine.

    Raises:
        InputError, ConfigError, EngineMismatchError: see :func:`check_weights_for`, :func:`refit_engine`; the engine
            does not fit this machine (``trtpipe.runtime.compat``).
    """
    from trtpipe.io import atomic_write_bytes, sha256_bytes
    from trtpipe.onnx.load import onnx_sha256
    from trtpipe.onnx.structure import weights_sha256
    from trtpipe.runtime.compat import load_sidecar
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine
    from trtpipe.spec import sidecar_path_for

    engine_path, onnx_path = Path(engine_path), Path(onnx_path)
    output = Path(output) if output else engine_path
    sidecar = load_sidecar(engine_path)
    model = check_same_graph(sidecar, engine_path, onnx_path) if sidecar.refittable else None
    new_weights = weights_sha256(model) if model is not None else None
    config = sidecar.build_config or {}
    if sidecar.refittable and config.get("strip_weights") and not config.get("refit") and new_weights != sidecar.weights_sha256:
        raise ConfigError(
            f"engine {engine_path} was built with --stripWeights alone (REFIT_IDENTICAL: TensorRT assumed the build's "
            f"own weights), and {onnx_path} has other weights (sha256 {new_weights[:12]}..., the build's "
            f"{(sidecar.weights_sha256 or '?')[:12]}...)",
            "refit it with the ONNX it was built from, or rebuild with --stripWeights --refit (or --refit) for new weights",
        )
    with TensorRTEngine(engine_path, flavor=flavor, weights=onnx_path) as engine:
        trt = engine.flavor.module
        serialization = engine._engine.create_serialization_config()
        serialization.clear_flag(trt.SerializationFlag.EXCLUDE_WEIGHTS)
        keeps_refit = hasattr(trt.SerializationFlag, "INCLUDE_REFIT")
        if keeps_refit:
            serialization.set_flag(trt.SerializationFlag.INCLUDE_REFIT)
        plan = engine._engine.serialize_with_config(serialization)
        if plan is None:
            raise EngineMismatchError(f"{engine.flavor.label} could not serialize the refitted {engine_path}",
                                      "run with -v for TensorRT's log")
        data = memoryview(plan).tobytes()
        seconds = engine.refit_seconds
    label = _weights_label(onnx_path)
    notes = [note for note in sidecar.notes if not note.startswith("RANDOM WEIGHTS")]
    notes.append(f"weights refitted from {onnx_path} (sha256 {new_weights[:12]}..., {label})"
                 + ("" if keeps_refit else f"; {engine.flavor.label} cannot keep a refitted plan refittable (no "
                    "SerializationFlag.INCLUDE_REFIT)"))
    if label == "random":
        notes.append("RANDOM WEIGHTS: this engine's outputs are meaningless; its timings are real")
    refitted = dataclasses.replace(
        sidecar, engine_file=output.name, engine_sha256=sha256_bytes(data), engine_bytes=len(data),
        weights_stripped=False, refittable=keeps_refit, weights_sha256=new_weights, weights_onnx=str(onnx_path),
        weights=label, preprocess=dict(sidecar.preprocess, weights=label) if sidecar.preprocess else None,
        # The CPU fallback runs the network ONNX: after a refit, the one with the engine's weights.
        network_onnx_path=str(onnx_path), network_onnx_sha256=onnx_sha256(onnx_path), notes=tuple(notes),
    )
    # Engine first, sidecar last, both atomic: an interrupted refit leaves the old pair.
    atomic_write_bytes(output, data)
    refitted.save(sidecar_path_for(output))
    return RefitResult(output, refitted, seconds)
