"""Issue 20: engines that travel, against each simulated TensorRT (10.13, 11.4, RTX 1.7; recorded APIs).

Hardware compatibility (--hardwareCompatibilityLevel), version compatibility (--vc, --excludeLeanRuntime),
weight-stripped and refittable engines (--stripWeights, --refit, trtpipe refit, weights= at load) and several
optimization profiles (--profile=N, --useProfile).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtpipe import cuda
from trtpipe.builder.builder import build_engine
from trtpipe.errors import BuildError, ConfigError, EngineMismatchError, InputError
from trtpipe.runtime.simulation import SimulatedCuda, make_tiny_classifier, simulated_flavor, tiny_spec
from trtpipe.runtime.tensorrt_engine import TensorRTEngine
from trtpipe.spec import BatchRange, BuildConfig, ProfileOptions, preprocess_path_for


@pytest.fixture
def tiny(tmp_path):
    onnx_path = make_tiny_classifier(tmp_path / "tiny.onnx")
    tiny_spec().save(preprocess_path_for(onnx_path))
    return onnx_path


def _x(batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, 3, 8, 8)).astype(np.float32)


def _reference(onnx_path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _new_weights(source, path, scale=3.0):
    """The same graph with other weight values."""
    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * scale + 1.0, tensor.name))
    onnx.save(model, str(path))
    return path


def _on_gpu(flavor, name, major, minor, version=None):
    """The same flavour (or ``version``) over another simulated GPU: where an engine travels to."""
    simulation = SimulatedCuda(name, major, minor)
    return simulation, simulated_flavor(simulation, flavor.name, version or flavor.version)


# -- hardware compatibility ---------------------------------------------------------------------


def test_ampere_plus_engine_runs_on_any_sm80_gpu_and_a_plain_one_only_on_its_own(simulated_machine, tiny, tmp_path):
    flavor = simulated_machine.flavor
    config = BuildConfig(batch=BatchRange(1, 2, 4), hardware_compatibility="ampere+")
    if flavor.is_rtx:
        result = build_engine(tiny, tmp_path / "hc.engine", config)
        assert result.sidecar.target["compute_capabilities"] == ["SM80", "SM86", "SM89", "SM120", "SM121"]
        t4, on_t4 = _on_gpu(flavor, "Tesla T4", 7, 5)
        with cuda.using_runtime(t4), pytest.raises(EngineMismatchError) as refused:
            TensorRTEngine(result.engine_path, flavor=on_t4)
        assert "--compute-capability SM75" in refused.value.hint and "ampere+" not in refused.value.hint
        with pytest.raises(ConfigError, match="ahead of time.*Hint: name the target GPUs' compute capability"):
            build_engine(tiny, tmp_path / "same.engine", BuildConfig(hardware_compatibility="sameComputeCapability"))
        with pytest.raises(ConfigError, match="SM75"):
            build_engine(tiny, tmp_path / "t.engine", BuildConfig(hardware_compatibility="ampere+",
                                                                  compute_capabilities=("SM75",)))
        return
    result = build_engine(tiny, tmp_path / "hc.engine", config)  # on the simulated RTX 4090, SM89
    plain = build_engine(tiny, tmp_path / "plain.engine", BuildConfig(batch=BatchRange(1, 2, 4)))
    assert result.sidecar.target["hardware_compatibility"] == "ampere+"
    assert "hardware_compatibility" not in plain.sidecar.target
    a100, on_a100 = _on_gpu(flavor, "NVIDIA A100", 8, 0)
    with cuda.using_runtime(a100):
        with TensorRTEngine(result.engine_path, flavor=on_a100) as engine:
            out = engine.infer({"input": _x()})["logits"]
        np.testing.assert_allclose(out, _reference(tiny, _x()), rtol=1e-5, atol=1e-5)
        with pytest.raises(EngineMismatchError, match=r"compute capability 8\.0.*--hardwareCompatibilityLevel ampere\+"):
            TensorRTEngine(plain.engine_path, flavor=on_a100)
    t4, on_t4 = _on_gpu(flavor, "Tesla T4", 7, 5)
    with cuda.using_runtime(t4):
        with pytest.raises(EngineMismatchError, match=r"ampere\+, which runs on compute capability 8\.0 and later"):
            TensorRTEngine(result.engine_path, flavor=on_t4)


# -- version compatibility ----------------------------------------------------------------------


def test_version_compatible_engine_runs_on_a_later_same_major_tensorrt(simulated_machine, tiny, tmp_path):
    flavor = simulated_machine.flavor
    with pytest.raises(ConfigError, match="--excludeLeanRuntime without --versionCompatible"):
        BuildConfig(exclude_lean_runtime=True)
    if flavor.is_rtx:  # measured on TensorRT-RTX 1.7: its wheel has no lean runtime to embed
        with pytest.raises(BuildError, match="libnvinfer_lean.*Hint: .*--excludeLeanRuntime"):
            build_engine(tiny, tmp_path / "vc.engine", BuildConfig(version_compatible=True))
        result = build_engine(tiny, tmp_path / "vcx.engine", BuildConfig(version_compatible=True, exclude_lean_runtime=True))
        assert result.sidecar.build_config["exclude_lean_runtime"] is True
        return
    vc = build_engine(tiny, tmp_path / "vc.engine", BuildConfig(batch=BatchRange(1, 2, 4), version_compatible=True))
    plain = build_engine(tiny, tmp_path / "plain.engine", BuildConfig(batch=BatchRange(1, 2, 4)))
    lean = build_engine(tiny, tmp_path / "lean.engine", BuildConfig(batch=BatchRange(1, 2, 4), version_compatible=True,
                                                                    exclude_lean_runtime=True))
    major = flavor.parsed_version.major
    later = simulated_flavor(simulated_machine.cuda, flavor.name, f"{major}.99.0")
    with TensorRTEngine(vc.engine_path, flavor=later) as engine:  # the simulation demands engine_host_code_allowed
        np.testing.assert_allclose(engine.infer({"input": _x()})["logits"], _reference(tiny, _x()), rtol=1e-5, atol=1e-5)
    with pytest.raises(EngineMismatchError, match="Hint: rebuild on this machine.*--versionCompatible"):
        TensorRTEngine(plain.engine_path, flavor=later)
    with pytest.raises(EngineMismatchError, match=rf"needs the lean runtime of TensorRT {flavor.version} "
                                                  rf"\(libnvinfer_lean\.so\.{major}"):
        TensorRTEngine(lean.engine_path, flavor=later)
    earlier = simulated_flavor(simulated_machine.cuda, flavor.name, f"{major}.0.0")
    with pytest.raises(EngineMismatchError, match="or a later"):
        TensorRTEngine(vc.engine_path, flavor=earlier)


# -- weight-stripped and refittable engines -----------------------------------------------------


def test_stripped_engine_is_smaller_refused_without_weights_and_refitted_at_load(simulated_machine, tmp_path):
    tiny = make_tiny_classifier(tmp_path / "wide.onnx", classes=300)  # weights big enough to outweigh the header
    full = build_engine(tiny, tmp_path / "full.engine", BuildConfig(batch=BatchRange(1, 2, 4)))
    stripped = build_engine(tiny, tmp_path / "stripped.engine", BuildConfig(batch=BatchRange(1, 2, 4), strip_weights=True))
    side = stripped.sidecar
    assert side.weights_stripped and side.refittable and side.graph_sha256 and side.weights_sha256
    assert side.engine_bytes < full.sidecar.engine_bytes
    with pytest.raises(InputError, match=r"weight-stripped.*Hint: .*trtpipe refit .*stripped\.engine --onnx MODEL\.onnx"):
        TensorRTEngine(stripped.engine_path)
    with TensorRTEngine(stripped.engine_path, weights=tiny) as engine:
        assert engine.refit_seconds >= 0
        np.testing.assert_allclose(engine.infer({"input": _x()})["logits"], _reference(tiny, _x()), rtol=1e-5, atol=1e-5)
    # --stripWeights alone is REFIT_IDENTICAL: TensorRT assumed the build's weights, so other ones are refused.
    other = _new_weights(tiny, tmp_path / "other.onnx")
    from trtpipe.refit import refit_plan

    with pytest.raises(ConfigError, match="REFIT_IDENTICAL.*Hint: .*--stripWeights --refit"):
        refit_plan(stripped.engine_path, other, tmp_path / "x.engine")
    assert not (tmp_path / "x.engine").exists()
    with pytest.raises(ConfigError, match="built without --refit or --stripWeights"):
        TensorRTEngine(full.engine_path, weights=tiny)


def test_refit_writes_a_plan_with_the_new_weights_and_updates_the_sidecar(simulated_machine, tiny, tmp_path):
    from trtpipe.refit import refit_plan
    from trtpipe.runtime.compat import load_sidecar

    flavor = simulated_machine.flavor
    built = build_engine(tiny, tmp_path / "r.engine", BuildConfig(batch=BatchRange(1, 2, 4), strip_weights=True, refit=True))
    new = _new_weights(tiny, tmp_path / "new.onnx")
    result = refit_plan(built.engine_path, new, tmp_path / "refitted.engine")
    side = load_sidecar(result.engine_path)
    assert side.weights_onnx == str(new) and not side.weights_stripped
    assert side.network_onnx_path == str(new) and side.weights == "unknown"  # the CPU fallback runs the new weights
    assert side.weights_sha256 != built.sidecar.weights_sha256
    assert side.engine_bytes > built.sidecar.engine_bytes  # the weights are in the plan now
    # TensorRT 10.13 has no SerializationFlag.INCLUDE_REFIT: its refitted plan is no longer refittable.
    assert side.refittable == hasattr(flavor.module.SerializationFlag, "INCLUDE_REFIT")
    with TensorRTEngine(result.engine_path) as engine:
        out = engine.infer({"input": _x()})["logits"]
    np.testing.assert_allclose(out, _reference(new, _x()), rtol=1e-5, atol=1e-5)
    assert not np.allclose(out, _reference(tiny, _x()), atol=1e-3)
    with TensorRTEngine(built.engine_path, weights=new) as engine:  # the same refit, in memory
        np.testing.assert_allclose(engine.infer({"input": _x()})["logits"], out, rtol=1e-6, atol=1e-6)


def test_refit_with_another_graph_names_the_first_tensor_that_differs(simulated_machine, tiny, tmp_path, capsys):
    from trtpipe.cli.main import main

    built = build_engine(tiny, tmp_path / "r.engine", BuildConfig(batch=BatchRange(1, 2, 4), refit=True))
    seven = make_tiny_classifier(tmp_path / "seven.onnx", classes=7)
    with pytest.raises(InputError, match=r"tensor 'weight' is weights FLOAT\[7x3\], the engine's is weights FLOAT\[5x3\]"):
        TensorRTEngine(built.engine_path, weights=seven)
    before = built.engine_path.read_bytes()
    assert main(["refit", str(built.engine_path), "--onnx", str(seven)]) == 2
    err = capsys.readouterr().err
    assert "tensor 'weight'" in err and "Hint:" in err and "Traceback" not in err
    assert built.engine_path.read_bytes() == before  # nothing overwritten
    assert main(["refit", str(built.engine_path), "--onnx", str(_new_weights(tiny, tmp_path / "n.onnx"))]) == 0
    assert "refitted" in capsys.readouterr().out


def test_pipeline_from_engine_refits_and_triton_refuses_a_stripped_plan(simulated_machine, tiny, tmp_path):
    from trtpipe.pipeline.pipeline import Pipeline
    from trtpipe.serve.triton_export import export_repository

    if simulated_machine.flavor.is_rtx:
        pytest.skip("Triton's stock backend cannot load TensorRT-RTX engines at all")
    built = build_engine(tiny, tmp_path / "s.engine", BuildConfig(batch=BatchRange(1, 2, 4), strip_weights=True))
    image = np.random.default_rng(0).integers(0, 255, (12, 14, 3), dtype=np.uint8)
    with Pipeline.from_engine(built.engine_path, backend="tensorrt", weights=tiny) as pipe:
        assert pipe(image) is not None
    with pytest.raises(ConfigError, match="weight-stripped.*Hint: ship the refitted plan: trtpipe refit"):
        export_repository(built.engine_path, tmp_path / "repo")


# -- several optimization profiles --------------------------------------------------------------


def _two_profiles():
    return BuildConfig(batch=BatchRange(1, 1, 1), extra_profiles=(ProfileOptions(BatchRange(3, 3, 4)),))


def test_two_profiles_each_call_runs_on_the_profile_that_holds_its_batch(simulated_machine, tiny, tmp_path):
    result = build_engine(tiny, tmp_path / "p.engine", _two_profiles())
    assert [p["input"]["max"][0] for p in result.sidecar.profiles] == [1, 4]
    with TensorRTEngine(result.engine_path) as engine:
        slot = engine._contexts[0]
        for batch, profile in ((1, 0), (4, 1), (1, 0), (3, 1)):
            out = engine.infer({"input": _x(batch)})["logits"]
            np.testing.assert_allclose(out, _reference(tiny, _x(batch)), rtol=1e-5, atol=1e-5)
            assert slot.context.active_optimization_profile == profile
        with pytest.raises(InputError, match=r"no optimization profile takes input shapes input 2x3x8x8 "
                                             r"\(profile 0: input 1x3x8x8\.\.1x3x8x8; profile 1: input 3x3x8x8"):
            engine.infer({"input": _x(2)})
    with TensorRTEngine(result.engine_path, profile=1) as engine:
        assert engine.max_batch == 4 and engine.input_limits["input"][0] == (3, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"--useProfile 2: engine .* has 2 optimization profile\(s\) \(0\.\.1\)"):
        TensorRTEngine(result.engine_path, profile=2)


def test_profile_groups_on_the_command_line_and_in_the_triton_config(simulated_machine, tiny, tmp_path, capsys):
    from trtpipe.cli.build import add_arguments, config_from_args
    from trtpipe.cli.main import main
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(tiny), "--profile=0", "--batch", "1", "--profile=1", "--minShapes", "input:3x3x8x8",
                              "--optShapes", "input:3x3x8x8", "--maxShapes", "input:4x3x8x8"])
    config = config_from_args(args)
    assert config.batch == BatchRange(1, 1, 1) and config.extra_profiles[0].shapes[0].max == (4, 3, 8, 8)
    gap = parser.parse_args([str(tiny), "--profile=2", "--batch", "4"])
    with pytest.raises(ConfigError, match="without a gap"):
        config_from_args(gap)
    engine = tmp_path / "p.engine"
    assert main(["build", str(tiny), "-o", str(engine), "--batch", "1", "--profile=1", "--batch", "3:3:4"]) == 0
    assert main(["inspect", str(engine)]) == 0
    assert "profile 1 input: min 3x3x8x8 opt 3x3x8x8 max 4x3x8x8" in capsys.readouterr().out
    if simulated_machine.flavor.is_rtx:
        return
    from trtpipe.serve.triton_export import export_repository

    result = export_repository(engine, tmp_path / "repo", pipeline=False)
    text = (tmp_path / "repo" / "p" / "config.pbtxt").read_text()
    assert 'profile: [ "0", "1" ]' in text and "max_batch_size: 4" in text
    assert any("batch sizes 2 are in none" in note for note in result.notes)


def test_bench_times_each_profile_of_a_two_profile_engine(simulated_machine, tiny, tmp_path):
    """Batch 1 runs on profile 0, batch 4 on profile 1 (the context switches on its stream); --useProfile pins one."""
    from trtpipe.bench.measure import MeasureSettings
    from trtpipe.bench.runner import run_bench
    from trtpipe.bench.targets import open_target

    engine = build_engine(tiny, tmp_path / "p.engine", _two_profiles()).engine_path
    quick = MeasureSettings(warmup_s=0.0, duration_s=0.0, iterations_min=2)
    with open_target(engine, flavor=simulated_machine.flavor) as target:
        report = run_bench(target, [1, 4], quick, end_to_end=False)
        assert target.engine._contexts[0].context.active_optimization_profile == 1  # batch 4 ran last
    assert {r.batch for r in report.results} == {1, 4}
    assert any("2 optimization profiles (profile 0: input batch 1..1; profile 1: input batch 3..4)" in n
               for n in target.notes)
    with open_target(engine, flavor=simulated_machine.flavor, profile=1) as target:
        with pytest.raises(InputError, match="outside|no optimization profile|expected"):
            run_bench(target, [1], quick, end_to_end=False)


def test_onnxruntime_fallback_runs_the_weights_given_for_a_refittable_engine(simulated_machine, tiny, tmp_path):
    from trtpipe.runtime.loader import load_engine

    built = build_engine(tiny, tmp_path / "r.engine", BuildConfig(batch=BatchRange(1, 2, 4), refit=True))
    new = _new_weights(tiny, tmp_path / "new.onnx")
    with load_engine(built.engine_path, backend="onnxruntime", weights=new) as engine:
        np.testing.assert_allclose(engine.infer({"input": _x()})["logits"], _reference(new, _x()), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="tensor 'weight'"):
        load_engine(built.engine_path, backend="onnxruntime", weights=make_tiny_classifier(tmp_path / "7.onnx", classes=7))
