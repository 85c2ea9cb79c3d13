# Every target creates .venv when it is missing and installs into it, so each works alone on a
# fresh machine. EXTRAS picks the optional dependencies (CI adds ray: EXTRAS=dev,ray).
PYTHON ?= python3
EXTRAS ?= dev
VENV := .venv
BIN := $(VENV)/bin
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

# The demo: mnist-5k (4,000 train / 1,000 test real digits, offline), tuned to end within 10
# minutes from a fresh clone on a 2-core AVX2-only CPU (fp32 there; --precision auto picks bf16
# where it is native). Each epoch embeds 1,000 of the training images; the training uses all.
# See the README's "make demo" section and benchmarks/RESULTS.md for the tuning runs.
DEMO_TRAIN := --dataset mnist-5k --epochs 6 --lr 0.01 --batch-size 32 --step-size 5 --gamma 0.1 \
	--embed-train-limit 1000 --quiet --overwrite

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cl-analyze train --loss softmax $(DEMO_TRAIN) --out artifacts/demo-softmax
	$(BIN)/cl-analyze train --loss center --center-weight 0.1 $(DEMO_TRAIN) --out artifacts/demo-center
	$(BIN)/cl-analyze report artifacts/demo-softmax artifacts/demo-center --out reports/demo

# The default set (a few minutes on a 2-core CPU); test-all adds the tests marked slow.
test: $(STAMP)
	$(BIN)/pytest -q

test-all: $(STAMP)
	$(BIN)/pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check cl_analyze tests benchmarks
	$(BIN)/ruff format --check cl_analyze tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The GPU check in one call (benchmarks/gpu_check.sh; results in gpu-check/results.md). It needs
# no .venv: the image's python3 with PyTorch runs it from the source tree, offline.
# Data first: the four Fashion-MNIST .gz files in data/fashion-mnist/ (README, "On a GPU").
.PHONY: gpu-check
GPU_CHECK_OUT ?= gpu-check
gpu-check:
	bash benchmarks/gpu_check.sh $(GPU_CHECK_OUT)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
