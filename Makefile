# fathombatch — the two commands a fresh machine needs: `make demo` and `make test`.
# Each target creates .venv itself when it is missing (or older than pyproject.toml).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FB     := $(BIN)/fathombatch
DEMO   := demo

.PHONY: setup demo lint test test-fast bench seed-table gpu-wheels clean

setup: $(VENV)/.installed

# A venv made before DALI moved to its CUDA 13 wheel has nvidia-dali-cuda120; both wheels write nvidia/dali, so the
# old one goes first (a no-op in a fresh venv).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip uninstall -y -q nvidia-dali-cuda120 2>/dev/null || true
	$(BIN)/pip install -e '.[dev]'
	touch $@

# The main job end to end on CPU: synthesise dives, train, export ONNX, score, evaluate.
demo: setup
	rm -rf $(DEMO)
	$(FB) synth $(DEMO)/train-dive --count 600 --seed 1 --size 640x360 --box-scale 2.5 --quiet
	$(FB) synth $(DEMO)/eval-dive --count 200 --seed 2 --size 640x360 --box-scale 2.5 --deep-fraction 0.2 --quiet
	$(FB) train --images $(DEMO)/train-dive/images --labels $(DEMO)/train-dive/train.csv \
		--arch efficientnet_lite0 --pretrained --epochs 6 --img-size 96 --batch-size 32 --out $(DEMO)/run --quiet
	$(FB) export $(DEMO)/run --format onnx --out engines/demo-efficientnet_lite0.onnx --overwrite
	$(FB) score $(DEMO)/eval-dive/images --engine demo-efficientnet_lite0.onnx \
		--out $(DEMO)/scores.parquet --submission $(DEMO)/submission.csv --quiet
	$(FB) evaluate $(DEMO)/scores.parquet --truth $(DEMO)/eval-dive/train.csv \
		--osd-truth $(DEMO)/eval-dive/osd.csv --report $(DEMO)/report
	@echo
	@echo "Outputs:"
	@echo "  synthetic dives     $(DEMO)/train-dive/, $(DEMO)/eval-dive/ (images/, train.csv, annotations.json, osd.csv)"
	@echo "  training run        $(DEMO)/run/ (config.json, metrics.parquet, checkpoints/)"
	@echo "  engine + manifest   engines/demo-efficientnet_lite0.onnx(.json)"
	@echo "  scores table        $(DEMO)/scores.parquet   submission: $(DEMO)/submission.csv"
	@echo "  evaluation report   $(DEMO)/report/report.html (report.md, metrics.json, per_class.parquet, plots)"

# The lint gate runs first, so CI enforces it: ruff's rule set and mypy's settings live in pyproject.toml.
lint: setup
	$(BIN)/ruff check fathombatch tests benchmarks
	$(BIN)/mypy fathombatch

test: setup lint
	$(BIN)/python -m pytest

# The throughput suite (trains its models on the first run): refreshes benchmarks/RESULTS.md and benchmarks/results/.
bench: setup
	$(BIN)/python benchmarks/run.py

# The seed study's table on synthetic data (44 minutes on 2 cores): refreshes benchmarks/seed_table/RESULTS.md.
seed-table: setup
	$(BIN)/python benchmarks/seed_table/run.py

# Wheels the lent GPU image lacks (benchmarks/gpu-wheels.txt), for Python 3.12 on x86-64 Linux whatever this machine
# runs, into wheelhouse/ for benchmarks/gpu_check.sh to install offline; fails when they pass 60 MiB (a run carries 64).
WHEELHOUSE ?= wheelhouse
gpu-wheels:
	rm -rf $(WHEELHOUSE)
	$(PYTHON) -m pip download --dest $(WHEELHOUSE) --python-version 3.12 --platform manylinux2014_x86_64 \
		--platform manylinux_2_17_x86_64 --only-binary=:all: --no-deps -r benchmarks/gpu-wheels.txt
	$(PYTHON) benchmarks/wheelhouse.py $(WHEELHOUSE) --max-mib 60

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(DEMO) .pytest_cache
