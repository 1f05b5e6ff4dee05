"""Issue 20 with the real TensorRT-RTX on the CPU: what it builds of the engines-that-travel options, and what it
refuses here (measured, so the hints say it)."""

import pytest

from trtpipe.builder.builder import build_engine
from trtpipe.errors import BuildError, ConfigError
from trtpipe.spec import BatchRange, BuildConfig, ProfileOptions

tensorrt_rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")


def _rtx(**options):
    return BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 1, 1), **options)


def test_ampere_plus_maps_to_the_sm80_and_later_targets_and_same_cc_is_refused(tiny_onnx, tmp_path):
    result = build_engine(tiny_onnx(), tmp_path / "hc.engine", _rtx(hardware_compatibility="ampere+"))
    assert result.sidecar.target == {"kind": "aot", "compute_capabilities": ["SM80", "SM86", "SM89", "SM120", "SM121"]}
    assert result.sidecar.build_config["hardware_compatibility"] == "ampere+"
    with pytest.raises(ConfigError, match="--compute-capability SM86"):
        build_engine(tiny_onnx(), tmp_path / "same.engine", _rtx(hardware_compatibility="sameComputeCapability"))
    assert not (tmp_path / "same.engine").exists()


def test_version_compatible_builds_only_without_the_lean_runtime_here(tiny_onnx, tmp_path):
    with pytest.raises(BuildError, match="libnvinfer_lean.*Hint: .*--excludeLeanRuntime"):
        build_engine(tiny_onnx(), tmp_path / "vc.engine", _rtx(version_compatible=True))
    assert not (tmp_path / "vc.engine").exists()
    result = build_engine(tiny_onnx(), tmp_path / "vcx.engine", _rtx(version_compatible=True, exclude_lean_runtime=True))
    assert result.engine_path.stat().st_size == result.sidecar.engine_bytes > 10_000
    assert result.sidecar.build_config["version_compatible"] is True


@pytest.mark.parametrize("options", [dict(strip_weights=True), dict(refit=True), dict(strip_weights=True, refit=True)])
def test_refittable_builds_need_a_gpu_and_say_so(tiny_onnx, tmp_path, options):
    with pytest.raises(BuildError, match="Hint: TensorRT-RTX .* compiles refittable and weight-stripped engines with "
                                         "the GPU's driver"):
        build_engine(tiny_onnx(), tmp_path / "s.engine", _rtx(**options))
    assert not (tmp_path / "s.engine").exists() and not (tmp_path / "s.engine.json").exists()


def test_two_profiles_build_one_engine_with_both(tiny_onnx, tmp_path):
    onnx_path = tiny_onnx()
    single = build_engine(onnx_path, tmp_path / "one.engine", _rtx())
    both = build_engine(onnx_path, tmp_path / "two.engine",
                        _rtx(extra_profiles=(ProfileOptions(BatchRange(8, 16, 32)),)))
    assert [p["input"]["max"][0] for p in both.sidecar.profiles] == [1, 32]
    assert both.sidecar.engine_bytes > single.sidecar.engine_bytes  # a second set of kernels/tactics is in the plan
    assert both.sidecar.build_config["extra_profiles"] == [{"batch": "8:16:32", "shapes": []}]
    assert build_engine(onnx_path, tmp_path / "two.engine",
                        _rtx(extra_profiles=(ProfileOptions(BatchRange(8, 16, 32)),))).skipped
