"""Does an engine fit this machine? Checked from its sidecar BEFORE TensorRT deserializes it.

A serialized TensorRT engine is tied to the TensorRT flavour and version that built it and to a GPU
(compute capability) or, for TensorRT-RTX, to a list of ahead-of-time targets. TensorRT's own refusal
is a log line and a ``None``; this module says which of them differs and how to rebuild.
"""

from __future__ import annotations

from pathlib import Path

from packaging.version import InvalidVersion, Version

from trtpipe.errors import EngineMismatchError, InputError, TrtpipeError
from trtpipe.spec import BuildConfig, EngineSidecar, ShapeRange, sidecar_path_for


def load_sidecar(engine_path: str | Path) -> EngineSidecar:
    """Reads ``ENGINE.json`` beside ``engine_path`` and checks the engine file against it (size).

    Raises:
        InputError: the engine or its sidecar is missing, or the engine's size differs from the
            sidecar's (a truncated or replaced file).
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise InputError(f"engine {engine_path}: no such file", "build it first: trtpipe build MODEL.onnx -o ENGINE")
    sidecar_path = sidecar_path_for(engine_path)
    if not sidecar_path.is_file():
        raise InputError(
            f"engine {engine_path} has no sidecar {sidecar_path.name} beside it",
            "trtpipe needs the sidecar to check and describe the engine; rebuild with trtpipe build ... --force",
        )
    sidecar = EngineSidecar.load(sidecar_path)
    size = engine_path.stat().st_size
    if size != sidecar.engine_bytes:
        raise InputError(
            f"engine {engine_path} is {size} bytes, its sidecar says {sidecar.engine_bytes}: "
            "the file is truncated or was replaced",
            "rebuild it: trtpipe build ... --force (copies of engines must include the .json sidecar)",
        )
    return sidecar


def _built_by(sidecar: EngineSidecar) -> str:
    """The compact form mismatch errors use ("ahead-of-time targets SM75,SM86"), unlike the sidecar's long one."""
    target = sidecar.target or {}
    if target.get("kind") == "aot":
        where = "ahead-of-time targets " + ",".join(target.get("compute_capabilities", []) or ["(default)"])
    else:
        where = f"{target.get('gpu_name', 'an unknown GPU')} (compute capability {target.get('compute_capability', '?')})"
    return f"built by {sidecar.flavor_label} for {where}"


def rebuild_command(sidecar: EngineSidecar, engine: str | Path, *, compute_capability: str | None = None) -> str:
    """The ``trtpipe build`` command that rebuilds ``engine`` in place with the options its sidecar records.

    Covers the options that decide most builds (precision, batch, targets, FP16/INT8 modes, calibration method,
    layers kept); an INT8 build also needs its calibration images, which the sidecar does not record (``--images
    DIR``). ``compute_capability`` replaces the recorded targets (rebuilding for this machine's GPU).
    """
    config = sidecar.build_config or {}
    parts = ["trtpipe build", str(sidecar.onnx_path), "-o", str(engine), "--precision", sidecar.precision]
    if config.get("batch"):
        parts += ["--batch", str(config["batch"])]
    for recorded in config.get("shapes") or ():
        parts.append(_shape_options(str(recorded)))
    targets = [compute_capability] if compute_capability else list(config.get("compute_capabilities") or [])
    if targets:
        parts += ["--compute-capability", ",".join(targets)]
    for index, extra in enumerate(config.get("extra_profiles") or (), start=1):
        parts.append(f"--profile={index}")
        if extra.get("batch"):
            parts += ["--batch", str(extra["batch"])]
        parts += [_shape_options(str(recorded)) for recorded in extra.get("shapes") or ()]
    if config.get("hardware_compatibility") and not compute_capability:  # a named target replaces ampere+'s list
        parts += ["--hardwareCompatibilityLevel", str(config["hardware_compatibility"])]
    for key, flag in (("version_compatible", "--versionCompatible"), ("exclude_lean_runtime", "--excludeLeanRuntime"),
                      ("strip_weights", "--stripWeights"), ("refit", "--refit")):
        if config.get(key):
            parts.append(flag)
    if config.get("fp16_mode") == "flag":
        parts += ["--fp16-mode", "flag"]
    calibrated = config.get("int8_mode") == "implicit" or sidecar.network_onnx_path != sidecar.onnx_path  # not Q/DQ as given
    if sidecar.precision == "int8" and calibrated:
        if config.get("int8_mode") == "implicit":
            parts += ["--int8-mode", "implicit"]
        parts += ["--images", "DIR"]
        if config.get("calib_method"):
            parts += ["--calib-method", str(config["calib_method"])]
        if config.get("auto_keep"):
            parts += ["--auto-keep", str(config["auto_keep"])]
        if config.get("keep_fp"):
            parts += ["--keep-fp", ",".join(config["keep_fp"])]
        if config.get("bias_correction") is False:
            parts.append("--no-bias-correction")
        for name in ("fidelity_target", "keep_precision", "max_fp_share"):  # the fidelity search's, where not the default
            if config.get(name) is not None and config[name] != BuildConfig.__dataclass_fields__[name].default:
                parts += ["--" + name.replace("_", "-"), str(config[name])]
    return " ".join([*parts, "--force"])


def _shape_options(recorded: str) -> str:
    """A recorded profile ``name:MIN:OPT:MAX`` as ``--minShapes/--optShapes/--maxShapes`` (the build's options)."""
    try:
        return ShapeRange.parse(recorded).as_options()
    except TrtpipeError:  # a hint must not fail on a sidecar an older trtpipe wrote
        return f"--shapes {recorded}"


def _rebuild_hint(sidecar: EngineSidecar, engine: str | Path, compute_capability: str | None = None) -> str:
    return "rebuild on this machine: " + rebuild_command(sidecar, engine, compute_capability=compute_capability)


def check_flavor(sidecar: EngineSidecar, flavor_name: str, flavor_version: str, engine: str) -> None:
    """Raises EngineMismatchError unless the installed TensorRT flavour and version can deserialize the engine.

    That is the version that built it, or, for an engine built with ``--versionCompatible``, that version or a later
    one of the same major (TensorRT runs it with the lean runtime of the build's version: embedded in the plan, or,
    built with ``--excludeLeanRuntime``, only where the build's version itself is installed; the message names it).
    """
    mine = f"{'TensorRT-RTX' if flavor_name == 'tensorrt_rtx' else 'TensorRT'} {flavor_version}"
    try:
        built, installed = Version(sidecar.trt_version), Version(flavor_version)
        same_version = built == installed
    except InvalidVersion:
        built = installed = None
        same_version = sidecar.trt_version == flavor_version
    if sidecar.trt_flavor == flavor_name and same_version:
        return
    config = sidecar.build_config or {}
    if sidecar.trt_flavor == flavor_name and built is not None and config.get("version_compatible"):
        lean = f"the lean runtime of {sidecar.flavor_label} (libnvinfer_lean.so.{built.major}, version {sidecar.trt_version})"
        if built.major == installed.major and installed > built:
            if not config.get("exclude_lean_runtime"):
                return  # the plan carries its lean runtime; the runtime allows its host code (TensorRTEngine)
            raise EngineMismatchError(
                f"engine {engine} was {_built_by(sidecar)} as version-compatible without its lean runtime "
                f"(--excludeLeanRuntime); this machine has {mine}, so it needs {lean}",
                f"install {sidecar.flavor_label} beside it, or rebuild without --excludeLeanRuntime so that the plan "
                f"carries its lean runtime: {rebuild_command(sidecar, engine).replace(' --excludeLeanRuntime', '')}",
            )
        raise EngineMismatchError(
            f"engine {engine} was {_built_by(sidecar)} as version-compatible, which runs on {sidecar.flavor_label} or a "
            f"later {built.major}.x only (with {lean}); this machine has {mine}",
            _rebuild_hint(sidecar, engine),
        )
    raise EngineMismatchError(
        f"engine {engine} was {_built_by(sidecar)}; this machine has {mine}",
        _rebuild_hint(sidecar, engine) + (" (add --versionCompatible for an engine that also runs on later "
                                          "TensorRT of the same major)" if sidecar.trt_flavor == flavor_name else ""),
    )


def check_gpu(sidecar: EngineSidecar, gpu_name: str, major: int, minor: int, engine: str, *, flavor=None) -> None:
    """Raises EngineMismatchError unless the engine has code for this GPU's compute capability.

    A TensorRT 10/11 engine runs on the compute capability it was built on. A TensorRT-RTX engine runs on its
    ahead-of-time targets: the ones recorded, or, built without ``--compute-capability``, the flavour's default
    targets (``flavor.default_compute_capabilities``; SM75 must be asked for). TensorRT-RTX has no target for
    some GPUs at all (Hopper, SM90): the message then says what would run there.

    Args:
        flavor: the installed flavour (a ``trtpipe.flavors.Flavor``), for TensorRT-RTX's target lists. Without
            it, an RTX engine built for its default targets is let through (TensorRT decides).
    """
    target = sidecar.target or {}
    mine = f"{gpu_name} (compute capability {major}.{minor})"
    sm = f"SM{major}{minor}"
    if target.get("kind") == "aot":
        recorded = [str(t).upper() for t in target.get("compute_capabilities", [])]
        valid = tuple(flavor.compute_capabilities) if flavor is not None and flavor.is_rtx else ()
        defaults = tuple(flavor.default_compute_capabilities) if valid else ()
        runs_on = recorded or list(defaults)
        if not runs_on or sm in runs_on:
            return
        if valid and sm not in valid:
            raise EngineMismatchError(
                f"engine {engine} was {_built_by(sidecar)}; this machine's GPU is {mine}, which "
                f"{flavor.label} has no target for (its targets: {', '.join(valid)})",
                "on this GPU use TensorRT 10/11 instead (pip install 'trtpipe[trt-cu13]', driver R580+, or "
                f"'trtpipe[trt-cu12]'): trtpipe build {sidecar.onnx_path} --precision {sidecar.precision} "
                "--flavor tensorrt --force; or run the ONNX with --backend onnxruntime",
            )
        raise EngineMismatchError(
            f"engine {engine} was {_built_by(sidecar)}; this machine's GPU is {mine}"
            + ("" if recorded else f" (the default targets are {', '.join(defaults)})"),
            _rebuild_hint(sidecar, engine, compute_capability=sm),
        )
    built_cc = str(target.get("compute_capability", ""))
    level = target.get("hardware_compatibility") or "none"
    if level == "ampere+":
        if major < 8:
            raise EngineMismatchError(
                f"engine {engine} was {_built_by(sidecar)} with --hardwareCompatibilityLevel ampere+, which runs on "
                f"compute capability 8.0 and later; this machine's GPU is {mine}",
                _rebuild_hint(sidecar, engine).replace(" --hardwareCompatibilityLevel ampere+", ""),
            )
        return
    if built_cc and built_cc != f"{major}.{minor}":
        raise EngineMismatchError(
            f"engine {engine} was {_built_by(sidecar)}"
            + (" with --hardwareCompatibilityLevel sameComputeCapability" if level == "sameComputeCapability" else "")
            + f"; this machine's GPU is {mine}",
            _rebuild_hint(sidecar, engine) + (" (with --hardwareCompatibilityLevel ampere+ one engine runs on every "
                                              "GPU of compute capability 8.0 and later)" if major >= 8 else ""),
        )
