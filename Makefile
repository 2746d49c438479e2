# The two commands: `make demo` and `make test`. Both build .venv/ on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rsrcnn_d2-installed
# Torch pinned to the releases verified on the project's CPU machines; override
# e.g. `make TORCH_PKGS="torch torchvision"` to let pip pick your own build.
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= output/demo

.PHONY: venv demo test clean-venv

venv: $(STAMP)

$(STAMP): setup.py tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH_PKGS)
	$(PY) -m pip install -e ".[test]"
	$(PY) tools/install_detectron2.py
	$(PY) -c "import detectron2, rsrcnn_d2; print('detectron2', detectron2.__version__, '+ rsrcnn_d2 ready')"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --output $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n auto --dist worksteal tests

clean-venv:
	rm -rf $(VENV)
