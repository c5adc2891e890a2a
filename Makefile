# make demo   sign example images over an embedded AMQP bus with a reference signing server, verify
# make test-fast   the tests that need no service (under a minute)
# make test   lint (ruff, mypy, import contracts), then the whole test suite (unit + integration with a real
#             registry, gpg, skopeo, RabbitMQ, cosign and a sigstore test bed), on two workers
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-fast system venv bench bench-plan bench-msg bench-scale bench-cosign \
	bench-bundle bench-floor bench-keyless bench-start bench-verify bench-trust bench-shard clean image lint
.DEFAULT_GOAL := test
# The package (signaction, signers, entrypoint) is installed in the venv; the test bed (testbed/)
# and the tests' helpers (tests/infra, tests/conftest.py) are not: bench/ and scripts/ find them
# here (pytest through pytest.ini's pythonpath).
HELPERS := PYTHONPATH=$(CURDIR):$(CURDIR)/tests$(if $(PYTHONPATH),:$(PYTHONPATH))

demo: system venv
	$(HELPERS) $(PY) scripts/demo.py

# Two lanes of workers (pytest-xdist), whole test files to a worker (a file's module fixtures
# are started once); each worker starts its own services on free ports, in its own folders.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: system venv lint
	$(PY) -m pytest --durations=15 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# make test-fast   the tests that need no service (no registry, broker, sigstore test bed,
#                  trixie tools): logic, in-process parts, the entrypoint on local files; under a
#                  minute here. A test's lane follows from its fixtures (tests/conftest.py).
test-fast: system venv
	$(PY) -m pytest -m "not integration" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS)) $(PYTEST_ARGS)

# make bench   every bench below, one after another, at the sizes issue 26 names (about 30
#              minutes on an idle 2-core machine), then docs/performance.md: one table, each figure
#              beside its anchor measured in the same run, with the machine, its load and the commands
bench: system venv
	$(HELPERS) $(PY) bench/report.py

# planning an images file: whole --dry-run processes at 1,000, 10,000 and 20,000 images
bench-plan: venv
	$(HELPERS) $(PY) bench/plan_bench.py

bench-msg: venv
	$(HELPERS) $(PY) bench/msg_bench.py

# the msg signer at 10,000, 20,000 and 100,000 images, the gpg signer at 1,000 and 10,000
bench-scale: system venv
	$(HELPERS) $(PY) bench/scale_bench.py

bench-cosign: system venv
	$(HELPERS) $(PY) bench/cosign_bench.py

# signing throughput by signature_format (legacy, bundle, both), fallback tag and referrers API
bench-bundle: system venv
	$(HELPERS) $(PY) bench/bundle_bench.py

# in-process cosign against a bare HTTP client pushing the same manifests (the floor), 1,000 images
bench-floor: system venv
	$(HELPERS) $(PY) bench/floor_bench.py

# 1,000 keyless images against the test bed limited to 500 requests a minute per service
bench-keyless: venv
	$(HELPERS) $(PY) bench/keyless_bench.py

# cold start: --help and a one-image gpg dry run against `python -c pass`
bench-start: venv
	$(HELPERS) $(PY) bench/start_bench.py

bench-verify: system venv
	$(HELPERS) $(PY) bench/verify_bench.py

# one cosign signature's trust decision (key + Rekor, keyless), CPU only, against a bare verify
bench-trust: venv
	$(HELPERS) $(PY) bench/trust_bench.py

bench-shard: venv
	$(HELPERS) $(PY) bench/shard_bench.py

system:
	scripts/setup-system.sh

# make image   build the action's image with buildah on a local Debian trixie base, then run the
#              entrypoint inside it (msg and cosign signing, verified outside); see scripts/make-image.sh
image: system venv
	PYTHON=$(PY) scripts/make-image.sh

# make lint   ruff check, mypy and the import contracts (lint-imports), all configured in
#             pyproject.toml; make test runs it first
lint: venv
	@status=0; $(PY) -m ruff check || status=1; $(PY) -m mypy || status=1; \
		$(VENV)/bin/lint-imports --no-cache || status=1; exit $$status

venv: $(VENV)/.installed

# The pinned requirements, then this project, editable and without dependencies (they are the
# pins): its console scripts in .venv/bin, edits live without reinstalling.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@$(PY) -c 'import proton, sys; sys.exit(0 if proton.SSL.present() else "python-qpid-proton was built without SSL: install libssl-dev and pkg-config, then make clean venv")'
	touch $@

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info
