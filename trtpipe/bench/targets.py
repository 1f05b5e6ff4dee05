"""What a bench runs: a model file or zoo name opened on a backend, with what the report must say about it.

``open_target("engines/m_fp16.engine")`` -> TensorRT; ``open_target("engines/m.onnx")`` -> ONNX Runtime;
``open_target("mobilenetv2", backend="torch")`` -> PyTorch eager. The target carries the model block
(name, file, precision, weights) and the backend block (name, device, simulated, fallback) of the report.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtpipe.errors import ConfigError, InputError
from trtpipe.onnx.quantized import precision_key
from trtpipe.runtime.base import Engine
from trtpipe.spec import PreprocessSpec, preprocess_path_for

BACKENDS = ("tensorrt", "onnxruntime", "torch")
_PRECISION_SUFFIX = re.compile(r"_(fp32|fp16|int8)$")


@dataclass
class BenchTarget:
    """An open Engine plus the report's model and backend blocks. Close it (or use ``with``)."""

    engine: Engine
    model: dict[str, Any]
    backend: dict[str, Any]
    spec: PreprocessSpec | None = None  # for the end-to-end mode; None: it is skipped
    sidecar: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # closed after the engine

    @property
    def device_timed(self) -> bool:
        """True when the engine's h2d/compute/d2h come from CUDA events (else they are not device stages)."""
        return bool(self.engine.device_timed)

    def async_target(self, feeds, transfers: bool = True):
        """An enqueue-ahead AsyncTarget (bench.measure) for this engine, or None where the backend has no queue."""
        return self.engine.enqueue_ahead(feeds, transfers=transfers)

    def close(self) -> None:
        self.engine.close()
        self.resources.close()  # after the engine: e.g. the CUDA simulation its buffers were allocated from

    def __enter__(self) -> "BenchTarget":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_target(
    model_or_file: str | Path,
    *,
    backend: str | None = None,
    precision: str | None = None,
    weights: str = "auto",
    cuda_graph: bool = False,
    transfers: bool = True,
    name: str | None = None,
    threads: int | None = None,
    flavor=None,
    simulate: bool = False,
    contexts: int = 1,
    spec: PreprocessSpec | None = None,
    profile: int | None = None,
    refit_from: str | Path | None = None,
) -> BenchTarget:
    """Opens what ``trtpipe bench`` was given.

    Args:
        model_or_file: an ``.engine``/``.plan`` (with sidecar), an ``.onnx`` file, or a zoo model name.
        backend: tensorrt | onnxruntime | torch. Defaults to the file's kind; for a zoo name, torch.
        precision: for a zoo name on torch: fp32 | fp16. For files it must match the file (checked).
        weights: torch backend only: auto | pretrained | random | checkpoint path. Defaults to auto.
        cuda_graph: TensorRT: replay a captured CUDA graph. Defaults to False.
        transfers: time H2D/D2H copies with each inference (False: trtexec's --noDataTransfers).
        name: the model name in the report. Defaults to the spec's/sidecar's model, else the file stem.
        threads: CPU backends: intra-op threads. Defaults to the library's choice (all cores).
        flavor: the TensorRT flavour (tests pass the simulation's); defaults to the installed one, and
            then a machine without a GPU is refused with a hint.
        simulate: run an engine file's ONNX (from its sidecar) through ``trtpipe.runtime.simulation``: it
            is a functional check (it times nothing) and is labelled simulated everywhere. Defaults to False.
        contexts: TensorRT: execution contexts of the engine (trtexec's ``--infStreams``); ONNX Runtime: calls
            that may run at once on its session. Defaults to 1.
        spec: files: the end-to-end mode's preprocess spec, over the one beside the ONNX or in the sidecar
            (``trtpipe.presets.resolve_spec``). Defaults to those.
        profile: TensorRT: time every batch on this optimization profile (``--useProfile``). Defaults to None: each
            batch runs on the first profile whose range holds it, so a multi-profile engine is timed per profile.
        refit_from: TensorRT: an ONNX to refit a ``--stripWeights``/``--refit`` engine from at load.

    Raises:
        ConfigError: an unknown backend, a combination that cannot run (``--simulate`` on an ONNX, several
            contexts on torch), no GPU for an engine.
        InputError: a file that does not exist.
    """
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is unknown, expected one of {', '.join(BACKENDS)}", "use --backend tensorrt, onnxruntime or torch")
    path = Path(model_or_file)
    is_file = path.suffix.lower() in (".onnx", ".engine", ".plan", ".trt")
    if simulate and (backend not in (None, "tensorrt") or not is_file or path.suffix.lower() == ".onnx"):
        seen = f"--backend {backend}" if backend not in (None, "tensorrt") else f"{model_or_file}, which is not an engine file"
        raise ConfigError(
            f"--simulate runs TensorRT engine files through a CPU simulation of TensorRT and CUDA, and got {seen}",
            "give an .engine file (with its .engine.json sidecar) without --backend, or drop --simulate",
        )
    if contexts > 1 and (backend == "torch" or not is_file):
        raise ConfigError(
            f"--infStreams {contexts} runs several inferences at once (TensorRT execution contexts, or concurrent "
            f"ONNX Runtime calls), and {model_or_file} runs on torch, which has no such mode here",
            "give an .engine or .onnx file, or drop --infStreams",
        )
    if not is_file or backend == "torch":
        return _open_torch(str(model_or_file), precision or "fp32", weights, name, threads)
    if not path.is_file():
        raise InputError(f"{path}: no such file", "check the path; build engines with make engine MODEL=... PRECISION=...")
    backend = backend or ("onnxruntime" if path.suffix.lower() == ".onnx" else "tensorrt")
    if simulate:
        target = _open_simulated(path, precision, cuda_graph, transfers, name, contexts)
    elif backend == "onnxruntime":
        target = _open_onnxruntime(path, precision, name, threads, contexts)
    else:
        target = _open_tensorrt(path, precision, cuda_graph, transfers, name, flavor, contexts, profile, refit_from)
    if spec is not None:
        target.spec = spec
    return target


def _profile_notes(sidecar, profile: int | None) -> list[str]:
    """Which optimization profile the batches run on, for an engine of several (the report says it per engine)."""
    if len(sidecar.profiles) < 2:
        return []
    ranges = "; ".join(f"profile {i}: " + ", ".join(f"{name} batch {r['min'][0]}..{r['max'][0]}" for name, r in p.items())
                       for i, p in enumerate(sidecar.profiles))
    if profile is not None:
        return [f"--useProfile {profile}: every batch ran on optimization profile {profile} ({ranges})"]
    return [f"{len(sidecar.profiles)} optimization profiles ({ranges}): each batch ran on the first that holds it"]


def _open_torch(model: str, precision: str, weights: str, name: str | None, threads: int | None) -> BenchTarget:
    from trtpipe.bench.torch_baseline import load_torch_model

    engine = load_torch_model(model, weights=weights, precision=precision, threads=threads)
    spec = engine.spec
    notes = [f"{model}: RANDOM weights (pretrained weights were not available)"] if spec.random_weights else []
    return BenchTarget(
        engine=engine,
        model={"name": name or spec.model, "file": None, "sha256": None, "precision": precision,
               "precision_realised": f"torch {precision} eager", "weights": spec.weights, "source": spec.source},
        backend={**_backend_block(engine, device=engine.device.type), "threads": engine.threads},
        spec=spec,
        notes=notes,
    )


def _open_onnxruntime(path: Path, precision: str | None, name: str | None, threads: int | None,
                      contexts: int = 1) -> BenchTarget:
    from trtpipe.io import sha256_file
    from trtpipe.runtime.loader import load_engine

    if path.suffix.lower() != ".onnx":  # an engine: run the ONNX it was built from (CPU fallback)
        from trtpipe.runtime.loader import onnx_for_engine

        path = onnx_for_engine(path)
    found = onnx_precision(path)
    _check_precision(path, found, precision)
    spec = find_spec(path)
    engine = load_engine(path, backend="onnxruntime", threads=threads, contexts=contexts)
    device = "gpu" if engine.backend.endswith("cuda") else "cpu"
    notes = []
    dequantized = precision_key(found) not in ("fp32", "fp16") and device == "cpu"  # any Q/DQ model
    if dequantized:
        # trtpipe places Q/DQ where TensorRT fuses them (inputs only); ONNX Runtime's CPU integer kernels
        # need Q/DQ around outputs too, so it dequantizes and runs float convolutions.
        notes.append(f"{path.name}: the Q/DQ model runs in ONNX Runtime on the CPU with float kernels after "
                     "dequantizing; this row checks the INT8 model, it does not show INT8 speed (TensorRT's does)")
    if engine.fp16_storage:
        notes.append(f"{path.name}: FP16 tensors are stored as FP16 between ops (as TensorRT's FP16 kernels store "
                     "them; a plain ONNX Runtime session on the CPU computes them in FP32 and hides overflow), which "
                     "blocks fusions: slower than a plain session (2.3x to 3.8x measured on EfficientNet-Lite0)")
    return BenchTarget(
        engine=engine,
        model={"name": name or (spec.model if spec else _stem(path)), "file": str(path), "sha256": sha256_file(path),
               "precision": found, "precision_realised": _realised(found), "weights": spec.weights if spec else "unknown",
               "source": spec.source if spec else "onnx"},
        backend={**_backend_block(engine, device=device), "threads": threads or "default (all cores)",
                 **({"int8_dequantized": True} if dequantized else {}),
                 **({"fp16_storage": engine.fp16_storage} if engine.fp16_storage is not None else {})},
        spec=spec,
        notes=notes,
    )


def _open_simulated(path: Path, precision, cuda_graph: bool, transfers: bool, name, contexts: int = 1) -> BenchTarget:
    """The engine's ONNX on the CUDA/TensorRT simulation; the report names the real engine file and says SIMULATED."""
    from trtpipe.runtime.simulation import SimulatedEngineFile

    with contextlib.ExitStack() as stack:
        simulated = stack.enter_context(SimulatedEngineFile(path))
        target = _open_tensorrt(simulated.path, precision, cuda_graph, transfers, name, simulated.flavor, contexts)
        target.resources.push(stack.pop_all())
    # The report describes the real engine file; only its ONNX ran.
    target.model.update(file=str(path), sha256=simulated.sidecar.engine_sha256)
    target.sidecar = simulated.sidecar.to_dict()
    target.backend["onnx"] = str(simulated.onnx_path)
    target.notes.append(f"simulated from {path}: its ONNX {simulated.onnx_path} ran in ONNX Runtime inside the simulation "
                        "of TensorRT and CUDA, as a functional check of trtpipe's engine path; nothing was timed")
    return target


def _open_tensorrt(path: Path, precision, cuda_graph: bool, transfers: bool, name, flavor, contexts: int = 1,
                   profile: int | None = None, refit_from=None) -> BenchTarget:
    from trtpipe.runtime.compat import load_sidecar
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    sidecar = load_sidecar(path)
    _check_precision(path, sidecar.precision, precision)
    if flavor is None:
        from trtpipe.testing import gpu_unavailable_reason

        reason = gpu_unavailable_reason()
        if reason is not None:
            raise ConfigError(
                f"engine {path} needs an NVIDIA GPU to run, and this machine has none ({reason})",
                f"time the same model on the CPU instead: trtpipe bench {sidecar.onnx_path} --backend onnxruntime "
                "(the report labels it as a CPU run); run TensorRT engines on a GPU machine",
            )
    engine = TensorRTEngine(path, flavor=flavor, cuda_graph=cuda_graph, contexts=contexts, profile=profile,
                            weights=refit_from)
    spec = sidecar.preprocess_spec
    simulated = engine.simulated
    notes = ["SIMULATED: TensorRT and CUDA were simulated on the CPU: a functional check, nothing was timed"] if simulated else []
    notes += _profile_notes(sidecar, profile)
    if refit_from is not None:
        notes.append(f"weights refitted at load from {refit_from} in {engine.refit_seconds * 1e3:.1f} ms")
    return BenchTarget(
        engine=engine,
        model={"name": name or (spec.model if spec else _stem(Path(sidecar.onnx_path))), "file": str(path),
               "sha256": sidecar.engine_sha256, "precision": sidecar.precision,
               "precision_realised": sidecar.precision_realised, "weights": sidecar.weights,
               "source": spec.source if spec else "onnx"},
        backend=_backend_block(engine, device="gpu", simulated=simulated, cuda_graph=cuda_graph, transfers=transfers,
                               gpu=getattr(getattr(engine, "device", None), "name", None)),
        spec=spec,
        sidecar=sidecar.to_dict(),
        notes=notes + [f"engine: {note}" for note in sidecar.notes],
    )


def _backend_block(engine: Engine, *, device: str, simulated: bool = False, cuda_graph: bool = False,
                   transfers: bool = True, gpu: str | None = None) -> dict[str, Any]:
    return {"name": engine.backend, "device": device, "gpu": gpu, "simulated": simulated, "fallback": False,
            "cuda_graph": cuda_graph, "transfers": transfers if device == "gpu" else None}


def onnx_precision(path: Path) -> str:
    """The Q/DQ model's quantization (int8 for trtpipe's own, see ``model_precision``), fp16 when its weights or values are float16, else fp32 (the runtime's rule)."""
    from trtpipe.runtime.onnxruntime_engine import onnx_precision as precision_of

    return precision_of(path)


def find_spec(onnx_path: Path) -> PreprocessSpec | None:
    """The preprocess spec beside an ONNX: ``m_int8.onnx`` -> ``m_int8.preprocess.json``, else ``m.preprocess.json``."""
    candidates = [preprocess_path_for(onnx_path)]
    stem = onnx_path.name.split(".")[0]
    if _PRECISION_SUFFIX.search(stem):
        candidates.append(onnx_path.with_name(_PRECISION_SUFFIX.sub("", stem) + ".preprocess.json"))
    for candidate in candidates:
        if candidate.is_file():
            return PreprocessSpec.load(candidate)
    return None


def _check_precision(path: Path, found: str, asked: str | None) -> None:
    if asked is not None and asked != precision_key(found):  # "int8 as quantized in the ONNX" is int8
        raise ConfigError(
            f"{path} is {found}, and --precision {asked} was asked for",
            f"drop --precision (files carry their precision), or give the {asked} file",
        )


def _realised(precision: str) -> str:
    # a model that came quantized is named by its own Q/DQ: "fp8 (E4M3) weights and activations" says it already
    return {"int8": "Q/DQ ONNX", "fp16": "FP16 ONNX", "fp32": "fp32"}.get(precision, f"Q/DQ ONNX ({precision})")


def _stem(path: Path) -> str:
    return _PRECISION_SUFFIX.sub("", path.name.split(".")[0])
