"""The recorded TensorRT API surfaces, and the simulation held to them (and to cuda-python's call shapes)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from trtpipe.runtime.api_surface import recorded_surfaces, surface_for
from trtpipe.runtime.simulation import SimulatedCuda, SimulationError, cudaError_t, simulated_trt

SURFACES = {(s.flavor, s.version): s for s in recorded_surfaces()}


def test_each_flavour_is_recorded_with_how_it_was_made():
    assert set(SURFACES) == {("tensorrt", "10.13.3.9"), ("tensorrt", "11.4.0.106"), ("tensorrt_rtx", "1.7.1.116")}
    for (flavor, _), surface in SURFACES.items():
        assert ("pybind11 sources" in surface.produced_by) if flavor == "tensorrt" else ("dir() of the installed" in surface.produced_by)
        assert {"ICudaEngine", "IExecutionContext", "Builder", "IBuilderConfig", "OnnxParser", "Runtime"} <= set(surface.classes)


def test_what_changed_between_flavours_is_recorded():
    trt10, trt11, rtx = SURFACES[("tensorrt", "10.13.3.9")], SURFACES[("tensorrt", "11.4.0.106")], SURFACES[("tensorrt_rtx", "1.7.1.116")]
    assert "device_memory_size" in trt10.members("ICudaEngine")
    assert "device_memory_size" not in trt11.members("ICudaEngine") | rtx.members("ICudaEngine")
    assert all("device_memory_size_v2" in s.members("ICudaEngine") for s in SURFACES.values())
    assert {"FP16", "INT8"} <= set(trt10.enum_values("BuilderFlag")) and not {"FP16", "INT8"} & set(trt11.enum_values("BuilderFlag"))
    assert "IInt8EntropyCalibrator2" in trt10.module and "IInt8EntropyCalibrator2" not in trt11.module | rtx.module
    assert "int8_calibrator" in trt10.members("IBuilderConfig") and "int8_calibrator" not in rtx.members("IBuilderConfig")
    assert rtx.enum_values("ComputeCapability") and "SM90" not in rtx.enum_values("ComputeCapability")
    assert "is_stream_capturable" in rtx.members("IExecutionContext")
    assert "is_stream_capturable" not in trt10.members("IExecutionContext") | trt11.members("IExecutionContext")
    assert "cuda_graph_strategy" in rtx.members("IRuntimeConfig") and "CudaGraphStrategy" not in trt11.module


def test_installed_tensorrt_rtx_matches_its_recording():
    """The RTX file is introspection of this very module: re-introspecting gives the same members."""
    trt = pytest.importorskip("tensorrt_rtx")
    surface = surface_for("tensorrt_rtx", trt.__version__)
    if surface.version != trt.__version__:
        pytest.skip(f"recorded {surface.version}, installed {trt.__version__}: re-record with tests/runtime/record_api_surface.py")
    for name, members in surface.classes.items():
        assert {m for m in dir(getattr(trt, name)) if not m.startswith("_")} == set(members), name
    for name in surface.enums:
        holder = trt.ILogger if name == "ILogger.Severity" else trt
        assert set(getattr(holder, name.split(".")[-1]).__members__) == set(surface.enum_values(name)), name


@pytest.mark.parametrize("flavor, version", sorted(SURFACES))
def test_the_simulation_has_exactly_the_recorded_names(flavor, version):
    surface = SURFACES[(flavor, version)]
    trt = simulated_trt(SimulatedCuda(), version, flavor)
    public = {name for name in vars(trt) if not name.startswith("_") and name != "SIMULATED"}
    assert public <= surface.module, sorted(public - surface.module)
    for name in public:
        value = getattr(trt, name)
        if isinstance(value, type) and hasattr(value, "__members__"):  # an enum: exactly the flavour's values
            assert set(value.__members__) == set(surface.enum_values(name)), name
        elif isinstance(value, type):
            # One implementation serves every flavour and invents nothing; strict classes hide what this one lacks.
            implemented = {m for cls in value.__mro__ if cls.__module__.startswith("trtpipe") for m in vars(cls) if not m.startswith("_")}
            anywhere = frozenset().union(*(s.members(name) for s in SURFACES.values()))
            assert implemented <= anywhere, (name, sorted(implemented - anywhere))
            if not hasattr(value, "_members"):  # subclassable bases (ILogger, IProfiler ...) are not strict
                assert implemented <= surface.members(name), (name, sorted(implemented - surface.members(name)))


def test_a_member_another_flavour_has_is_an_attribute_error(sim_engine, sim_flavor, sim_cuda):
    trt = sim_flavor.module
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(sim_engine.read_bytes())
    assert engine.device_memory_size_v2 > 0
    if sim_flavor.parsed_version.major == 10 and not sim_flavor.is_rtx:
        assert engine.device_memory_size == engine.device_memory_size_v2
        assert trt.BuilderFlag.INT8 is not None and hasattr(trt, "IInt8EntropyCalibrator2")
    else:
        with pytest.raises(AttributeError, match="device_memory_size"):
            engine.device_memory_size  # noqa: B018 - the access is the test
        assert not hasattr(trt.BuilderFlag, "FP16") and not hasattr(trt, "IInt8EntropyCalibrator2")
    context = engine.create_execution_context()
    assert hasattr(context, "is_stream_capturable") == sim_flavor.is_rtx
    with pytest.raises(AttributeError):
        context.trtpipe_private = 1  # pybind11 objects take no new attributes


def test_nptype_refuses_what_numpy_lacks_as_the_bindings_do(sim_flavor):
    trt = sim_flavor.module
    assert trt.nptype(trt.DataType.HALF) is np.float16
    for name in ("BF16", "FP8", "INT4", "FP4"):
        with pytest.raises(TypeError, match="Could not resolve TensorRT datatype"):
            trt.nptype(getattr(trt.DataType, name))
    assert trt.DataType.BF16.itemsize == 2 and trt.DataType.INT4.itemsize == 0.5


# -- cuda-python ---------------------------------------------------------------------------------------


def _real_cudart():
    return pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed")


def test_every_simulated_cuda_call_exists_in_cuda_python_with_its_error_codes():
    cudart = _real_cudart()
    calls = [name for name, _ in inspect.getmembers(SimulatedCuda, inspect.isfunction) if name.startswith("cuda")]
    assert len(calls) >= 25
    missing = [name for name in calls if not hasattr(cudart, name)]
    assert not missing
    for error in cudaError_t:
        assert int(getattr(cudart.cudaError_t, error.name)) == int(error), error.name


#: A call of each binding with arguments that fail without a driver (or succeed), and the simulated call's arguments.
_CALLS = {
    "cudaStreamSynchronize": ((0,), None), "cudaMalloc": ((16,), (16,)), "cudaMallocHost": ((16,), (16,)),
    "cudaStreamCreateWithFlags": ((1,), (1,)), "cudaEventCreateWithFlags": ((0,), (0,)), "cudaSetDevice": ((0,), (0,)),
    "cudaGetDeviceCount": ((), ()), "cudaGetDevice": ((), ()), "cudaGetLastError": ((), ()), "cudaDriverGetVersion": ((), ()),
    "cudaStreamDestroy": ((0,), None), "cudaEventDestroy": ((0,), None), "cudaFree": ((0,), None),
}


@pytest.mark.parametrize("call", sorted(_CALLS))
def test_results_have_cuda_pythons_tuple_shape(call):
    """cuda-python returns (err,) for calls without a value and (err, value) otherwise, failing or not."""
    cudart = _real_cudart()
    real_args, sim_args = _CALLS[call]
    real = getattr(cudart, call)(*real_args)
    sim = SimulatedCuda()
    simulated = getattr(sim, call)(*(sim_args if sim_args is not None else (0xDEAD,)))
    assert isinstance(real, tuple) and isinstance(simulated, tuple)
    assert len(simulated) == len(real), (call, real, simulated)


def test_unsimulated_recorded_names_fail_loudly():
    trt = simulated_trt(SimulatedCuda(), "10.13.3.9", "tensorrt")
    with pytest.raises(SimulationError, match="the simulation has no Dims"):
        trt.Dims  # noqa: B018
    assert trt.Refitter and trt.OnnxParserRefitter  # simulated since issue 20
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        trt.NoSuchThing  # noqa: B018
