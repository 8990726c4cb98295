# vaswani: set-up, the main job, the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all quality bench gpu-check clean

setup: $(VENV)/.installed

# torch first, pinned: 2.13.0 is the CPU build on this disk; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,parity,tools,explore,bertviz,vision]"
	touch $@

demo: setup
	$(PY) -m vaswani.demo

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --durations=15

# The README's quality figures (Shakespeare, English-Spanish, Rotten Tomatoes): about an hour on 2 cores.
quality: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/quality.py

# Speed and memory against BERT, GPT-2 and Marian, GPT-NeoX, BLOOM and T5 (positions inside attention), and ViT, at
# identical shapes, then int8 quantisation against float (benchmarks/README.md): about 15 minutes for the first three
# pairs (the position pairs are not yet timed in full on quiet cores) and 6.
bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/bench.py
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/quantization.py

# On a machine with a GPU: precision, attention back-ends, generation, compile_generation, Trainer, FSDP and the bench's
# ratios there, under 8 minutes (benchmarks/README.md); exits 1 if a check fails.
gpu-check: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/gpu_check.py

# Include the longer runs marked `slow`.
test-all: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider -m ""

clean:
	rm -rf $(VENV) outputs
