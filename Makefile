# vaswani: set-up, the main job, the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-oldest test-all quality bench clean

setup: $(VENV)/.installed

# torch first, pinned: 2.13.0 is the CPU build on this disk; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,parity]"
	touch $@

demo: setup
	$(PY) -m vaswani.demo

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider

# The modeling, generation and pipeline tests on the oldest transformers pyproject.toml allows (5.23, where the cache
# is still called `past_key_values`), installed beside the current one: under a minute. CI runs it after `test`.
OLDEST := $(VENV)/transformers-oldest
test-oldest: setup
	$(PY) -m pip install --quiet --no-deps --target $(OLDEST) transformers==5.23.0
	PYTHONPATH=$(OLDEST) $(PY) -c "import transformers as t; assert t.__version__ == '5.23.0', t.__version__"
	PYTHONPATH=$(OLDEST) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider \
		tests/test_modeling.py tests/test_generation.py tests/test_bad_input.py tests/test_pipelines.py \
		tests/test_onednn_linear.py

# The README's quality figures (Shakespeare, English-Spanish, Rotten Tomatoes): about an hour on 2 cores.
quality: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/quality.py

# Speed and memory against BERT, GPT-2 and Marian at identical shapes (benchmarks/README.md): about 15 minutes.
bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) benchmarks/bench.py

# Include the longer runs marked `slow`.
test-all: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider -m ""

clean:
	rm -rf $(VENV) outputs
