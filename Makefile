# trtpipe: every target calls the CLI in .venv (created and filled on first use).
# On a machine without a GPU the venv gets TensorRT-RTX (builds engines ahead of time on the CPU);
# with nvidia-smi present it gets TensorRT 10/11 instead. Override with EXTRAS=...

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
TRTPIPE  := $(BIN)/trtpipe
HAS_GPU  := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
EXTRAS   ?= export,report,serve,dev,$(if $(HAS_GPU),trt,rtx)

MODEL     ?= mobilenetv2
PRECISION ?= fp32
BATCH     ?=
SHAPES    ?=
ONNX      ?=
FORCE     ?=
CALIB     ?= calib_data

STEM        := $(subst :,_,$(MODEL))
SOURCE_ONNX := $(if $(ONNX),$(ONNX),engines/$(STEM).onnx)
ENGINE_STEM := $(basename $(notdir $(SOURCE_ONNX)))
ENGINE      := engines/$(ENGINE_STEM)_$(PRECISION).engine
BUILD_FLAGS := --precision $(PRECISION) $(if $(BATCH),--batch $(BATCH)) $(if $(SHAPES),--shapes $(SHAPES)) \
               $(if $(filter int8,$(PRECISION)),--images $(CALIB)) $(if $(FORCE),--force)

.PHONY: help venv engine onnx calib-data test test-gpu perf clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e '.[$(EXTRAS)]'
	$(if $(findstring serve,$(EXTRAS)),$(BIN)/pip install --no-deps nvidia-pytriton==0.7.0)
	@touch $@

venv: $(BIN)/.installed  ## create .venv with trtpipe and its extras ($(EXTRAS))

onnx: $(BIN)/.installed  ## export MODEL to engines/MODEL.onnx (skipped when up to date)
	$(if $(ONNX),@echo "using $(ONNX)",$(TRTPIPE) export $(MODEL) -o $(SOURCE_ONNX))

engine: onnx $(if $(filter int8,$(PRECISION)),calib-data)  ## build engines/MODEL_PRECISION.engine (MODEL=, ONNX=, PRECISION=, BATCH=, SHAPES=, FORCE=1)
	$(TRTPIPE) build $(SOURCE_ONNX) -o $(ENGINE) $(BUILD_FLAGS)

calib-data: $(BIN)/.installed  ## fill calib_data/ with calibration images if it is empty
	$(TRTPIPE) calib-data $(CALIB)

test: $(BIN)/.installed  ## run the test suite (no GPU needed)
	$(BIN)/python -m pytest

test-gpu: $(BIN)/.installed  ## run the GPU tests (marker gpu, in tests/gpu and tests/bench); says so when no GPU is here
	@$(BIN)/python -c "from trtpipe.testing import gpu_unavailable_reason as r; m = r(); print('no GPU here (' + m + '): the gpu tests will be skipped' if m else 'GPU found')"
	$(BIN)/python -m pytest -m gpu -rs

perf: $(BIN)/.installed  ## run the benchmarks in tests/perf (medians and ratios, one run)
	@set -e; for script in tests/perf/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:  ## remove generated engines, ONNX files and reports
	rm -rf engines/*.engine engines/*.json engines/*.onnx engines/*.cache reports

distclean: clean  ## also remove .venv
	rm -rf $(VENV)
