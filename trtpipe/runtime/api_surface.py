"""The recorded TensorRT Python API, per flavour and version: which classes, members and enum values exist.

The files ``trtpipe/data/trt_api_<flavour>-<major.minor>.json`` are made by ``tests/runtime/record_api_surface.py``
(each says in its ``_produced_by`` field how: TensorRT 10/11 from NVIDIA's pybind11 binding sources at a release
tag, confirmed against the compiled bindings wheel; TensorRT-RTX by introspecting the installed module). They are
what the simulation (``trtpipe.runtime.simulation``) offers, member for member, so a call that exists in one
flavour only fails in the CPU suite the way it would fail on a GPU with that flavour.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

#: The classes trtpipe may use (runtime, builder, parser, calibrator, profiler, inspector, logger), by Python name.
RECORDED_CLASSES = (
    "ILogger", "Logger", "Runtime", "ICudaEngine", "IExecutionContext", "EngineInspector", "IProfiler",
    "IRuntimeConfig", "IHostMemory", "IOutputAllocator", "Builder", "IBuilderConfig", "INetworkDefinition", "ITensor",
    "IOptimizationProfile", "ITimingCache", "IProgressMonitor", "OnnxParser", "ParserError", "IInt8Calibrator",
    "IInt8EntropyCalibrator2", "Refitter", "OnnxParserRefitter", "ISerializationConfig",
)

#: The enums trtpipe may use ("ILogger.Severity" is nested in ILogger).
RECORDED_ENUMS = (
    "DataType", "TensorIOMode", "TensorFormat", "TensorLocation", "LayerInformationFormat", "ProfilingVerbosity",
    "NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "ComputeCapability", "CudaGraphStrategy",
    "ExecutionContextAllocationStrategy", "CalibrationAlgoType", "OnnxParserFlag", "ErrorCode", "ILogger.Severity",
    "HardwareCompatibilityLevel", "SerializationFlag",
)


def surface_file_name(flavor: str, version: str) -> str:
    release = Version(version).release
    return f"trt_api_{flavor}-{release[0]}.{release[1] if len(release) > 1 else 0}.json"


@dataclass(frozen=True)
class ApiSurface:
    """One flavour and version's recorded API (see the module docstring for where it comes from)."""

    flavor: str
    version: str  # the version the file was recorded from, e.g. "10.13.3.9"
    produced_by: str
    module: frozenset[str]  # top-level names of the module
    classes: dict[str, frozenset[str]]  # class -> members (inherited ones included)
    enums: dict[str, tuple[str, ...]]  # enum -> values (plus "name", "value", and "itemsize" for DataType)

    @property
    def label(self) -> str:
        return f"{'TensorRT-RTX' if self.flavor == 'tensorrt_rtx' else 'TensorRT'} {self.version}"

    def members(self, cls: str) -> frozenset[str]:
        """Members of ``cls``; an empty set when the flavour has no such class."""
        return self.classes.get(cls, frozenset())

    def enum_values(self, enum: str) -> tuple[str, ...]:
        """The values of ``enum`` (without the ``name``/``value``/``itemsize`` attributes)."""
        return tuple(v for v in self.enums.get(enum, ()) if v not in ("name", "value", "itemsize"))


def recorded_surfaces() -> list[ApiSurface]:
    """Every recorded surface, in file-name order."""
    return [_load(path.name) for path in sorted(DATA_DIR.glob("trt_api_*.json"))]


def surface_for(flavor: str, version: str) -> ApiSurface:
    """The recorded surface of ``flavor`` ``version``: the same major.minor when recorded, else the same major's.

    Members come and go between minors only with deprecation cycles of a major; the major is what decides what
    exists (TensorRT 11 removed what 10.x deprecated). A version of a major with no recording is refused.

    Raises:
        LookupError: no surface of that flavour and major is recorded.
    """
    exact = DATA_DIR / surface_file_name(flavor, version)
    if exact.is_file():
        return _load(exact.name)
    major = Version(version).release[0]
    same_major = [s for s in recorded_surfaces() if s.flavor == flavor and Version(s.version).release[0] == major]
    if not same_major:
        have = ", ".join(f"{s.flavor} {s.version}" for s in recorded_surfaces())
        raise LookupError(f"no recorded API surface for {flavor} {version} (recorded: {have})")
    return same_major[-1]


@functools.lru_cache(maxsize=None)
def _load(name: str) -> ApiSurface:
    data = json.loads((DATA_DIR / name).read_text())
    return ApiSurface(
        flavor=data["flavor"],
        version=data["version"],
        produced_by=data["_produced_by"],
        module=frozenset(data["module"]),
        classes={k: frozenset(v) for k, v in data["classes"].items()},
        enums={k: tuple(v) for k, v in data["enums"].items()},
    )
