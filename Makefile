# ratedial: the two commands a newcomer needs are `make demo` and `make test`.
# Each bootstraps .venv from nothing; system packages the tests need are
# installed with apt-get when running as root, and named clearly when not.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# System programs the tests use (command name:Debian package). r-cran-lme4 (R, ~90 s to
# install) cross-checks the Truth-and-Bias model; without it that one test is skipped.
SYSTEM_DEPS := mosquitto:mosquitto mpv:mpv ffmpeg:ffmpeg ffprobe:ffmpeg cvlc:vlc-bin+vlc-plugin-base \
               chromium:chromium openssl:openssl mosquitto_passwd:mosquitto \
               dbus-run-session:dbus-bin Rscript:r-cran-lme4
# What make demo needs of them (it records without a video when they are missing and not root).
DEMO_DEPS := mpv:mpv ffmpeg:ffmpeg

.PHONY: all demo test bench soak lint fuzz sysdeps clean help rp2emu

help:
	@echo "make demo   - the whole study in about a minute: video, two dials, analysis"
	@echo "make test   - run every test (bootstraps .venv)"
	@echo "make bench  - run benchmarks, results under bench/results/"
	@echo "make lint   - ruff and mypy (also as Windows and macOS see the code)"
	@echo "make soak   - long fault sessions (not part of make test)"
	@echo "make fuzz   - the fuzz targets (codec, config, players), then the property tests (dial core at length, the rest from fresh seeds)"
	@echo "make rp2emu - the firmware on an emulated Pico (real MicroPython rp2 UF2), alone"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# The emulated Pico (tests/test_rp2emu.py, tests/rp2emu/): rp2040js from npm, installed here
# when node is, and MicroPython v1.28.0's RPI_PICO UF2 + the RP2040 boot ROM read from
# ../shared/rp2emu/ (RATEDIAL_RP2EMU points elsewhere). Without node or the UF2 the tests skip
# with one line saying so. To rebuild the UF2 from source (internet, gcc-arm-none-eabi,
# libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib, cmake; ~4 min on 2 cores):
#   git clone --branch v1.28.0 https://github.com/micropython/micropython && cd micropython
#   make -C mpy-cross && make -C ports/rp2 BOARD=RPI_PICO submodules all
#   cp ports/rp2/build-RPI_PICO/firmware.uf2 ../shared/rp2emu/RPI_PICO-v1.28.0.uf2
RP2EMU_NPM := tests/rp2emu/node_modules/.package-lock.json
$(RP2EMU_NPM): tests/rp2emu/package.json tests/rp2emu/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix tests/rp2emu --no-audit --no-fund --loglevel=error \
	  || echo "rp2emu: npm ci failed; the emulated-Pico tests will be skipped"; \
	else echo "rp2emu: npm not found; the emulated-Pico tests will be skipped"; fi

rp2emu: $(STAMP) $(RP2EMU_NPM)
	@mkdir -p tests/artifacts; rm -f tests/artifacts/rp2emu.json; \
	RATEDIAL_RP2EMU_SUMMARY=tests/artifacts/rp2emu.json $(PY) -m pytest -m rp2emu -q tests/test_rp2emu*.py; \
	rc=$$?; $(PY) tests/rp2emu/summary.py tests/artifacts/rp2emu.json; exit $$rc

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
	@$(MAKE) --no-print-directory sysdeps SYSTEM_DEPS="$(DEMO_DEPS)" || true
	$(VENV)/bin/ratedial demo

# Three pytest workers (pytest-xdist), a test module per worker at a time (module fixtures
# are made once): most tests wait on real time (dials at 1 kHz, players, brokers), and with two
# workers the two cores still sat idle a quarter of the time (vmstat). Measured here: two
# workers 13 min 20 s on an idle machine; three 12 min 33 s with a CPU hog on one core.
# TEST_JOBS=0 runs them in one process.
TEST_JOBS ?= 3
test: $(STAMP) sysdeps $(RP2EMU_NPM)
	@$(PY) -m pytest -m "not soak" $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadscope); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - treating as failure"; exit 1; fi; \
	exit $$rc

bench: $(STAMP) sysdeps
	$(PY) bench/run.py

soak: $(STAMP) sysdeps
	$(PY) -m pytest -m soak

# Windows and macOS hosts: the same strict check as those platforms see the code. The virtual
# dial is a Linux simulator and players/fake_mpv.py (a test and bench fake) serves a Unix socket:
# both are left out, and silent where other modules import them lazily.
MYPY_OTHER_OS := --follow-imports=silent --exclude 'host/ratedial/virtual/'
lint: $(STAMP)
	$(VENV)/bin/ruff check host tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --platform win32 $(MYPY_OTHER_OS) --exclude 'host/ratedial/players/fake_mpv\.py'
	$(VENV)/bin/mypy --platform darwin $(MYPY_OTHER_OS)

# The libFuzzer targets (codec, config, player parsers) from fresh random seeds, FUZZ_SECONDS
# each, then the dial core's stateful property test at length (FUZZ_EXAMPLES examples of 40
# steps; make test runs 60). make test runs each target from one fixed seed, 20,000 inputs.
# Crashes are written to .fuzz-corpus/ as crash-*; keep each as a regression seed.
fuzz: $(STAMP)
	@for t in codec config players; do mkdir -p .fuzz-corpus/$$t && \
	  find tests/fuzz/corpus/$$t -maxdepth 1 -type f -exec cp -n {} .fuzz-corpus/$$t/ \; ; done
	cd .fuzz-corpus && for t in codec config players; do \
	  RATEDIAL_FUZZ_SKIP_KNOWN=1 ../$(PY) ../tests/fuzz/fuzz_$$t.py $$t -max_len=8192 \
	    -max_total_time=$${FUZZ_SECONDS:-300} || exit 1; done
	RATEDIAL_FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-5000} $(PY) -m pytest -q --timeout=0 \
	  tests/test_core_stateful.py
	RATEDIAL_HYPOTHESIS=explore $(PY) -m pytest -q --timeout=0 \
	  tests/test_clock.py tests/test_codec_props.py tests/test_firmware_protocol.py \
	  tests/test_media_clock.py tests/test_outbox.py tests/test_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
