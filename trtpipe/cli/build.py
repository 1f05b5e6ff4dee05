"""trtpipe build: ONNX -> TensorRT engine + sidecar."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import (
    _ProfileOption,
    add_flavor_argument,
    add_int8_arguments,
    add_postprocess_arguments,
    add_profile_arguments,
    add_spec_arguments,
    csv_list,
    extra_profiles,
    postprocess_from_args,
    profile_shapes,
    spec_from_args,
)

VERB = "build"
HELP = "build a TensorRT engine (FP32/FP16/INT8) and its sidecar from an ONNX file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the ONNX model (FP32, or already Q/DQ)")
    parser.add_argument("-o", "--output", help="engine path (default: beside the ONNX, <stem>_<precision>.engine)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8", "fp8"), default="fp32",
                        help="default: fp32; fp8: E4M3 Q/DQ (opset 19) with the same calibration, fidelity target and "
                             "search as int8, for GPUs with FP8 tensor cores (SM89+: Ada, Hopper, Blackwell)")
    parser.add_argument("--batch", action=_ProfileOption,
                        help="batch profile MIN:OPT:MAX or N (default for a dynamic batch: 1:1:1); after --profile=N, "
                             "profile N's")
    add_profile_arguments(parser)
    parser.add_argument("--workspace", type=int, metavar="MIB", help="workspace memory pool limit in MiB")
    parser.add_argument("--opt-level", type=int, metavar="0-5", help="builder optimization level (TensorRT default 3)")
    parser.add_argument("--compute-capability", type=csv_list, default=(), metavar="SM86,...",
                        help="TensorRT-RTX ahead-of-time targets (default: the flavour's, Ampere and newer)")
    parser.add_argument("--timing-cache", metavar="FILE", help="timing cache file (default: timing.cache beside the engine)")
    parser.add_argument("--images", metavar="DIR",
                        help="calibration images for --precision int8; for fp16, images for the FP16 range check "
                        "(e.g. calib_data/)")
    add_int8_arguments(parser, target=True)
    parser.add_argument("--int8-mode", choices=("explicit", "implicit"), default="explicit",
                        help="explicit: Q/DQ ONNX, every flavour (default); implicit: TensorRT 10 calibrator")
    parser.add_argument("--fp16-mode", choices=("explicit", "flag"), default="explicit",
                        help="explicit: FP16 ONNX, strongly typed (default); flag: TensorRT 10 BuilderFlag.FP16")
    parser.add_argument("--fuse-preprocess", metavar="HxW|dynamic",
                        help="preprocess on the GPU: the engine takes uint8 NHWC BGR frames of this size (e.g. 1080x1920, "
                             "antialiased as the spec asks) or any size within --shapes frames:... (dynamic: not "
                             "antialiased); writes <engine stem>.fused.onnx beside the engine")
    add_postprocess_arguments(parser, "the engine", "; writes <engine stem>.postprocess.onnx")
    compatibility = parser.add_argument_group("engines that travel (trtexec's options)")
    compatibility.add_argument("--hardwareCompatibilityLevel", dest="hardware_compatibility",
                               choices=("none", "ampere+", "sameComputeCapability"),
                               help="GPUs the engine runs on: none (the build GPU's compute capability, default), ampere+ "
                                    "(any SM80+ GPU), sameComputeCapability; TensorRT-RTX: ampere+ means its SM80+ "
                                    "targets")
    compatibility.add_argument("--versionCompatible", "--vc", dest="version_compatible", action="store_true",
                               help="the engine also runs on later TensorRT of the same major (with its lean runtime)")
    compatibility.add_argument("--excludeLeanRuntime", dest="exclude_lean_runtime", action="store_true",
                               help="with --vc: leave the lean runtime out of the plan (the deployment provides it)")
    compatibility.add_argument("--stripWeights", dest="strip_weights", action="store_true",
                               help="a plan without its refittable weights; refit from the ONNX at load (weights=) or "
                                    "with trtpipe refit")
    compatibility.add_argument("--refit", action="store_true",
                               help="weights can be replaced later (trtpipe refit ENGINE --onnx NEW.onnx)")
    add_flavor_argument(parser)
    add_spec_arguments(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even when the engine is up to date")


def config_from_args(args: argparse.Namespace):
    from trtpipe.spec import BatchRange, BuildConfig, parse_fuse_preprocess

    return BuildConfig(
        precision=args.precision,
        batch=BatchRange.parse(args.batch) if args.batch else None,
        shapes=profile_shapes(args.min_shapes, args.opt_shapes, args.max_shapes, args.profile_shapes),
        workspace_mib=args.workspace,
        optimization_level=args.opt_level,
        flavor=args.flavor,
        compute_capabilities=tuple(args.compute_capability),
        timing_cache=args.timing_cache,
        int8_mode=args.int8_mode,
        fp16_mode=args.fp16_mode,
        calib_images=args.images,
        calib_method=args.calib_method,
        calib_max_images=args.max_images,
        keep_fp=tuple(args.keep_fp),
        auto_keep=args.auto_keep,
        bias_correction=args.bias_correction,
        fidelity_target=args.fidelity_target,
        keep_precision=args.keep_precision,
        max_fp_share=args.max_fp_share,
        fuse_preprocess=parse_fuse_preprocess(args.fuse_preprocess) if args.fuse_preprocess else None,
        fuse_postprocess=postprocess_from_args(args),
        extra_profiles=extra_profiles(args),
        hardware_compatibility=args.hardware_compatibility,
        version_compatible=args.version_compatible,
        exclude_lean_runtime=args.exclude_lean_runtime,
        strip_weights=args.strip_weights,
        refit=args.refit,
    )



def run(args: argparse.Namespace) -> int:
    from trtpipe.builder.builder import build_engine, default_engine_path
    from trtpipe.io import check_outputs

    check_outputs(files={"-o": args.output or default_engine_path(args.onnx, args.precision), "--timing-cache": args.timing_cache})

    config = config_from_args(args)
    # FP16/INT8 and fused preprocessing feed images: they need a spec (derived where none is written); FP32 records one
    # where the input is an image, so that the engine's sidecar can feed it later
    needs_spec = config.precision == "int8" or config.calib_images is not None or config.fuse_preprocess is not None
    spec = spec_from_args(args, args.onnx, required=needs_spec)
    result = build_engine(args.onnx, args.output, config, spec=spec, force=args.force)
    for note in result.sidecar.notes:
        print(f"note: {note}")
    print(result.summary())
    return 0
