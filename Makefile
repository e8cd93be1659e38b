# gazecxr — `make demo` runs the product on synthetic data; `make test` runs the test suite; `make docs` builds the site.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GAZECXR := $(VENV)/bin/gazecxr
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo_out
DEMO_N ?= 500
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install browser test demo bench docs clean-demo

install: $(STAMP)

# constraints.txt pins torch/torchvision to the versions tested here; setup.cfg only sets the oldest.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,docs,onnx,app,tensorboard,explain]"
	touch $(STAMP)

# The browser tests drive Debian's headless Chromium; install it when missing.
browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		echo "installing chromium and chromium-driver (Debian) for the browser tests"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

test: install browser
	$(PY) -m pytest -q

demo: install
	$(GAZECXR) synthetic --out $(DEMO_DIR)/raw --n $(DEMO_N) --seed 0 --overwrite
	$(GAZECXR) convert egd-cxr --egd-dir $(DEMO_DIR)/raw/EGD --image-dir $(DEMO_DIR)/raw/MIMIC \
		--out $(DEMO_DIR)/synthetic.h5 --height 160 --width 128 --sigma 26 --workers 2
	$(GAZECXR) data summary $(DEMO_DIR)/synthetic.h5
	$(GAZECXR) train stage1 --config demo --set data.h5=$(DEMO_DIR)/synthetic.h5
	$(GAZECXR) train stage2 --config demo --set data.h5=$(DEMO_DIR)/synthetic.h5
	$(GAZECXR) train stage3 --config demo --set data.h5=$(DEMO_DIR)/synthetic.h5
	$(GAZECXR) registry list --tag demo
	$(GAZECXR) evaluate --config demo --set data.h5=$(DEMO_DIR)/synthetic.h5 --checkpoint latest

# report_page needs Chromium: install it (make browser) or, where that fails, skip that benchmark.
bench: install
	@$(MAKE) --no-print-directory browser || echo "make bench: could not install chromium (make browser failed)"
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then $(PY) -m bench; else \
		echo "make bench: skipping report_page: it needs Debian's chromium and chromium-driver ($(CHROMIUM), $(CHROMEDRIVER))"; \
		$(PY) -m bench --skip report_page; fi

# The documentation site, strict: a broken link, a missing page or an unresolved docstring reference fails.
docs: install
	$(PY) -m mkdocs build --strict --site-dir site

clean-demo:
	rm -rf $(DEMO_DIR)
