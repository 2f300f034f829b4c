# ratedial: the two commands a newcomer needs are `make demo` and `make test`.
# Each bootstraps .venv from nothing; system packages the tests need are
# installed with apt-get when running as root, and named clearly when not.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# System programs the tests use (command name:Debian package).
SYSTEM_DEPS := mosquitto:mosquitto mpv:mpv ffmpeg:ffmpeg ffprobe:ffmpeg cvlc:vlc-bin+vlc-plugin-base \
               chromium:chromium openssl:openssl mosquitto_passwd:mosquitto

.PHONY: all demo test bench soak lint fuzz sysdeps clean help

help:
	@echo "make demo   - run a virtual dial and show its decoded stream live"
	@echo "make test   - run every test (bootstraps .venv)"
	@echo "make bench  - run benchmarks, results under bench/results/"
	@echo "make lint   - ruff and mypy"
	@echo "make soak   - long fault sessions (not part of make test)"
	@echo "make fuzz   - run the codec fuzz target for a bounded time"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

sysdeps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  cmd=$${dep%%:*}; pkg=$$(echo $${dep##*:} | tr + ' '); \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing (install them with: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/ratedial demo

test: $(STAMP) sysdeps
	@$(PY) -m pytest -m "not soak"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - treating as failure"; exit 1; fi; \
	exit $$rc

bench: $(STAMP) sysdeps
	$(PY) bench/run.py

soak: $(STAMP) sysdeps
	$(PY) -m pytest -m soak

lint: $(STAMP)
	$(VENV)/bin/ruff check host tests bench
	$(VENV)/bin/mypy

fuzz: $(STAMP)
	@mkdir -p .fuzz-corpus && cp -n tests/fuzz/corpus/codec/* .fuzz-corpus/
	$(PY) tests/fuzz/fuzz_codec.py .fuzz-corpus -max_total_time=$${FUZZ_SECONDS:-300}

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
