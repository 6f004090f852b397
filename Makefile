# The two commands of the README: `make demo` and `make test`. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: venv demo test test-fast bench lint clean

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# Generate Shapes, train FCN-8s for a few minutes, evaluate: metrics + overlay PNGs in $(DEMO_DIR).
demo: $(STAMP)
	$(BIN)/python train.py --config configs/seg/fcn8s_shapes.py:demo --workdir $(DEMO_DIR)
	$(BIN)/python eval.py --workdir $(DEMO_DIR)
	@echo "metrics: $(DEMO_DIR)/eval/metrics.json   overlays: $(DEMO_DIR)/eval/*.png"

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python tools/bench.py --config configs/seg/fcn8s_shapes.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .cache runs
