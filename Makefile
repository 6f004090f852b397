# The two commands of the README: `make demo` and `make test`. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: venv venv-bench demo test bench lint clean

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# torch + torchvision for the comparison tools only (tools/bench.py --compare-torch, the parity
# tools run their PyTorch half under it); never needed to train or to test.
venv-bench:
	$(PY) -m venv .venv-bench
	.venv-bench/bin/pip install -q -r requirements-bench.txt

# Generate Shapes, train FCN-8s for a few minutes, evaluate: metrics + overlay PNGs in $(DEMO_DIR).
# train.py evaluates its last step itself: the files and numbers eval.py would write.
demo: $(STAMP)
	$(BIN)/python train.py --config configs/seg/fcn8s_shapes.py:demo --workdir $(DEMO_DIR)
	@echo "metrics: $(DEMO_DIR)/eval/metrics.json   overlays: $(DEMO_DIR)/eval/*.png"

# pytest-xdist: one worker per core plus one, at most 4 (each worker generates its own Shapes
# data), none on a single core. The extra worker uses the time the others leave a core idle
# (with 2 workers on 2 cores, 1.76 cores busy on average): fresh compile cache, 3 workers 8:24 vs
# 2 workers 9:41 (BENCHMARKS.md, eighth 2026-12-06 session). Whole files go to one worker, so module
# fixtures are built once; they go in collection order, slowest first (tests/conftest.py).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -ge 2 ] && n=$$((n + 1)); \
	[ $$n -gt 4 ] && n=4; [ $$n -lt 2 ] && n=0; echo $$n)
# ruff first (seconds): a lint error fails before the minutes of pytest.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# Segmentation speed table of BENCHMARKS.md: every FCN x upsampling kind, DeconvNet, and the
# sliding-window patch classifier at the same 128x128 resolution.
UPSAMPLE_KINDS := nearest bed_of_nails max_unpool transpose_conv resize_conv
SEG_BENCH := $(foreach m,fcn32s fcn16s fcn8s,$(foreach k,$(UPSAMPLE_KINDS),\
	--config configs/seg/$(m)_shapes.py:upsample=$(k))) --config configs/seg/deconvnet_shapes.py
bench: $(STAMP)
	$(BIN)/python -m tools.bench $(SEG_BENCH)
	$(BIN)/python -m tools.bench --config configs/seg/patch_classifier_shapes.py --steps 3

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .venv-bench .cache runs
