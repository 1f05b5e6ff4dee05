# trtpipe: every target calls the CLI in .venv (created and filled on first use).
# On a machine without a GPU the venv gets TensorRT-RTX (builds engines ahead of time on the CPU);
# with nvidia-smi present it gets TensorRT 10/11 with the cuda-python of the driver's CUDA major
# (trt-cu13 for a CUDA 13 driver, R580+; trt-cu12 for CUDA 12 drivers). Override with EXTRAS=...

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
TRTPIPE  := $(BIN)/trtpipe
HAS_GPU  := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
# The CUDA version the driver supports, from nvidia-smi's header ("CUDA Version: 12.8"): cuda-python 13 fails every
# call on a CUDA 12 driver, so TensorRT and cuda-python come per CUDA major.
CUDA_MAJOR := $(if $(HAS_GPU),$(shell nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -n1))
TRT_EXTRA  := $(if $(filter 12,$(CUDA_MAJOR)),trt-cu12,trt-cu13)
EXTRAS   ?= export,report,serve,coverage,dev,$(if $(HAS_GPU),$(TRT_EXTRA),rtx)
# make test-gpu runs on a bare GPU machine too: the venv's Python when there is one, else $(PYTHON) with this checkout
# on PYTHONPATH (no install, no download). GPU_INSTALL=1 first tries pip install --no-deps --no-build-isolation -e .
GPU_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

MODEL     ?= mobilenetv2
PRECISION ?= fp32
BATCH     ?=
MIN_SHAPES ?=
OPT_SHAPES ?=
MAX_SHAPES ?=
SHAPES    ?=
ONNX      ?=
FORCE     ?=
CALIB     ?= calib_data
CALIB_METHOD ?= percentile
AUTO_KEEP ?= 0
FIDELITY_TARGET ?= auto
KEEP_PRECISION ?= auto

STEM        := $(subst :,_,$(MODEL))
SOURCE_ONNX := $(if $(ONNX),$(ONNX),engines/$(STEM).onnx)
ENGINE_STEM := $(basename $(notdir $(SOURCE_ONNX)))
ENGINE      := engines/$(ENGINE_STEM)_$(PRECISION).engine
BUILD_FLAGS := --precision $(PRECISION) $(if $(BATCH),--batch $(BATCH)) $(if $(MIN_SHAPES),--minShapes $(MIN_SHAPES)) $(if $(OPT_SHAPES),--optShapes $(OPT_SHAPES)) \
               $(if $(MAX_SHAPES),--maxShapes $(MAX_SHAPES)) $(if $(SHAPES),--shapes $(SHAPES)) \
               $(if $(filter fp16 int8 fp8,$(PRECISION)),--images $(CALIB)) \
               $(if $(filter int8 fp8,$(PRECISION)),--calib-method $(CALIB_METHOD) --auto-keep $(AUTO_KEEP) \
                 --fidelity-target $(FIDELITY_TARGET) --keep-precision $(KEEP_PRECISION)) $(if $(FORCE),--force)

BENCH_BATCH    ?= 1,8,32
BENCH_WARMUP   ?= 200ms
BENCH_DURATION ?= 3s
THREADS        ?=
BENCH_FLAGS    := --batch $(BENCH_BATCH) --warmup $(BENCH_WARMUP) --duration $(BENCH_DURATION) $(if $(THREADS),--threads $(THREADS))
BENCH_JSON     := reports/$(ENGINE_STEM)

.PHONY: help venv engine onnx calib-data bench coverage test test-gpu perf clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e '.[$(EXTRAS)]'
	$(if $(findstring serve,$(EXTRAS)),$(BIN)/pip install --no-deps nvidia-pytriton==0.7.0)
	$(if $(findstring coverage,$(EXTRAS)),$(BIN)/pip install --no-deps ultralytics==8.4.190)
	@touch $@

venv: $(BIN)/.installed  ## create .venv with trtpipe and its extras ($(EXTRAS))

onnx: $(BIN)/.installed  ## export MODEL to engines/MODEL.onnx (skipped when up to date)
	$(if $(ONNX),@echo "using $(ONNX)",$(TRTPIPE) export $(MODEL) -o $(SOURCE_ONNX))

engine: onnx $(if $(filter fp16 int8 fp8,$(PRECISION)),calib-data)  ## build engines/MODEL_PRECISION.engine (MODEL=, ONNX=, PRECISION=, BATCH=, MIN_SHAPES=/OPT_SHAPES=/MAX_SHAPES=, FORCE=1; int8: CALIB_METHOD=, AUTO_KEEP=, FIDELITY_TARGET=, KEEP_PRECISION=)
	$(TRTPIPE) build $(SOURCE_ONNX) -o $(ENGINE) $(BUILD_FLAGS)

bench: onnx calib-data  ## time MODEL: TensorRT fp32/fp16/int8 (with a GPU), ONNX Runtime fp32 + int8 Q/DQ, PyTorch eager -> reports/MODEL.md
	@mkdir -p reports
	$(if $(HAS_GPU),set -e; for p in fp32 fp16 int8; do \
		$(MAKE) --no-print-directory engine PRECISION=$$p; \
		$(TRTPIPE) bench engines/$(ENGINE_STEM)_$$p.engine $(BENCH_FLAGS) --json $(BENCH_JSON)_tensorrt_$$p.json; done)
	$(MAKE) --no-print-directory engine PRECISION=int8
	$(TRTPIPE) bench $(SOURCE_ONNX) --backend onnxruntime $(BENCH_FLAGS) --json $(BENCH_JSON)_onnxruntime_fp32.json
	$(TRTPIPE) bench engines/$(ENGINE_STEM).int8.onnx --backend onnxruntime $(BENCH_FLAGS) --json $(BENCH_JSON)_onnxruntime_int8.json
	$(if $(ONNX),,$(TRTPIPE) bench $(MODEL) --backend torch $(BENCH_FLAGS) --json $(BENCH_JSON)_torch_fp32.json)
	$(TRTPIPE) report $(BENCH_JSON)_*.json -o reports/$(ENGINE_STEM).md --baseline $(BENCH_JSON)_onnxruntime_fp32.json

coverage: $(BIN)/.installed  ## model-coverage sweep of the zoo -> reports/coverage.md + .json (about 20 min on 2 cores)
	nice -n 10 $(TRTPIPE) coverage --workdir engines/coverage --reports reports

calib-data: $(BIN)/.installed  ## fill calib_data/ with calibration images if it is empty
	$(TRTPIPE) calib-data $(CALIB)

test: $(BIN)/.installed  ## run the test suite (no GPU needed)
	$(BIN)/python -m pytest

test-gpu:  ## GPU checks (CUDA layer for real; TensorRT ones where installed) -> reports/test-gpu.json; also on a bare GPU machine
	$(if $(GPU_INSTALL),$(GPU_PYTHON) -m pip install --no-deps --no-build-isolation -e . || echo "pip install failed: running from the checkout")
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} timeout 480 $(GPU_PYTHON) tests/gpu/run_gpu_checks.py --json reports/test-gpu.json

perf: $(BIN)/.installed  ## run the benchmarks in tests/perf (medians and ratios, one run)
	@set -e; for script in tests/perf/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:  ## remove generated engines, ONNX files and reports
	rm -rf engines/*.engine engines/*.json engines/*.onnx engines/*.cache reports

distclean: clean  ## also remove .venv
	rm -rf $(VENV)
