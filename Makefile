# edge-audio: the two commands to start with are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Debian packages the suite needs: pyalsaaudio builds against libasound2-dev; the daemon's tests and the demo
# start their own Mosquitto; the TLS tests make certificates with openssl; the deploy tests start real sshd
# "devices" (openssh-server) reached with the system ssh client; the recorder's tests start a real PostgreSQL and
# open its pages in headless Chromium through the system driver (no browser download).
SYS_PACKAGES = libasound2-dev mosquitto mosquitto-clients openssl openssh-server openssh-client ffmpeg \
               postgresql chromium chromium-driver
# Model files for `make bench` (fetched with sha256 pins, or copied from $EDGE_AUDIO_ASSETS).
MODELS = out/models

.PHONY: help demo test test-fast model bench bench-runtime sysdeps venv clean

help:
	@echo "make demo    classify a recording, then the whole chain: broker, daemon, monitor"
	@echo "make test    install what is missing and run the whole test suite"
	@echo "make test-fast  the tests that start no broker, no sshd, no TensorFlow and take under ~5 s each"
	@echo "make model   install the default model bundle (Coral's split YAMNet)"
	@echo "make bench   per-window time (front end / invoke / rest) for the YAMNet variants"

sysdeps:
	@missing=$$(for p in $(SYS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages: $$missing"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "missing system packages: $$missing -- run: sudo apt-get install $$missing"; exit 2; fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# device runtime only (what a board gets)
$(VENV)/.device: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[device]'
	@touch $@

# everything: device runtime + host tools (TensorFlow) + test tools
$(VENV)/.all: $(BIN)/python pyproject.toml | sysdeps
	$(BIN)/pip install -q -e '.[device,tools,dev]'
	@touch $@ $(VENV)/.device

venv: $(VENV)/.all

model: $(VENV)/.device
	$(BIN)/python -m tools fetch bundle

demo: model | sysdeps
	@$(BIN)/python -m tools fetch samples --dest out/audio >/dev/null
	$(BIN)/edge-audio classify out/audio/miaow_16k.wav --top-k 3
	$(BIN)/python -m tools demo --audio out/audio

# every run prints its 25 slowest tests (a variable of its own: .ci/run sets PYTEST_ARGS="-q")
PYTEST_DURATIONS ?= --durations=25
# three workers (pytest-xdist) on two cores: much of the suite waits on child processes, brokers and sshd devices
# rather than computing. A module stays on one worker, the longest groups start first (tests/conftest.py);
# PYTEST_WORKERS= runs everything in one process.
PYTEST_WORKERS ?= -n 3 --dist loadscope --no-loadscope-reorder
# the markers (pyproject.toml): broker = starts Mosquitto, sshd = starts sshd devices, tensorflow = needs TensorFlow,
# postgres = starts PostgreSQL, slow = over ~5 s
FAST_TESTS = not broker and not sshd and not tensorflow and not postgres and not slow

# every skipped test's reason is printed at the end (-rs): a skip is never a quiet one
test: $(VENV)/.all
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_DURATIONS) -rs $(PYTEST_ARGS)

# the unit and wiring tiers and the fast integration tests: under a minute
test-fast: $(VENV)/.all
	$(BIN)/python -m pytest -m "$(FAST_TESTS)" $(PYTEST_WORKERS) $(PYTEST_DURATIONS) -rs $(PYTEST_ARGS)

# `make bench` = every bench-* part below (each part adds itself as a prerequisite of bench)
bench: bench-runtime

bench-runtime: model
	@$(BIN)/python -m tools fetch waveform --dest $(MODELS) >/dev/null
	@$(BIN)/python -m tools fetch samples --dest out/audio >/dev/null
	@mkdir -p out/bench
	@echo "== the installed bundle (Edge TPU, then the int8 CPU twin + front end), checked against this machine's profile"
	-OPENBLAS_NUM_THREADS=1 $(BIN)/edge-audio bench --delegate all --threads 1,2 --seconds 5 \
	  --audio out/audio/speech_whistling2.wav --out out/bench/runtime-bundle.json --check
	@echo "== the int8 CPU twin at a hop that is not a whole number of 10 ms frames (0.4875 s)"
	OPENBLAS_NUM_THREADS=1 $(BIN)/edge-audio bench --delegate cpu --seconds 5 --hop 0.4875 \
	  --audio out/audio/speech_whistling2.wav --out out/bench/runtime-bundle-hop04875.json
	@echo "== the published waveform model"
	OPENBLAS_NUM_THREADS=1 $(BIN)/edge-audio bench --model $(MODELS)/yamnet_classification.tflite \
	  --labels $(MODELS)/yamnet_class_map.csv --delegate cpu --seconds 5 --audio out/audio/speech_whistling2.wav \
	  --out out/bench/runtime-waveform.json
	@echo "== the bundle again with one OpenBLAS thread per core (NumPy's default; edge-audio itself sets 1)"
	OPENBLAS_NUM_THREADS=0 $(BIN)/edge-audio bench --delegate cpu --seconds 5 \
	  --audio out/audio/speech_whistling2.wav --out out/bench/runtime-bundle-blas-default.json

# the kit beside MediaPipe and the TFLite Task Library (each installed in out/bench/peers/<name>/.venv on first use),
# every runner started once and measured in alternating rounds
.PHONY: bench-peers
bench: bench-peers
bench-peers: model
	@$(BIN)/python -m tools fetch waveform --dest $(MODELS) >/dev/null
	@$(BIN)/python -m tools fetch samples --dest out/audio >/dev/null
	$(BIN)/python -m tools.bench.peers --model $(MODELS)/yamnet_classification.tflite \
	  --labels $(MODELS)/yamnet_class_map.csv --audio out/audio/speech_whistling2.wav --rounds 7 --seconds 2 \
	  --out out/bench

# the daemon as it runs (WAV replay at real time, MQTT to a Mosquitto started here): peak RSS beside a bare LiteRT
# process with the same model, CPU at real time beside the bench pipeline's, in paired rounds
.PHONY: bench-daemon
bench: bench-daemon
bench-daemon: model | sysdeps
	@$(BIN)/python -m tools fetch samples --dest out/audio >/dev/null
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m tools daemon-bench --audio out/audio/speech_whistling2.wav --rounds 5 \
	  --seconds 10 --out out/bench

# what [clips] costs at real time: the daemon with clips off, FLAC and Opus side by side on devset sounds 5 times a
# minute (rounds of one 24 s loop): CPU per audio second and the ratio, peak RSS, clips written, disk a day (~2 min);
# needs the asset mirror's devset/
.PHONY: bench-clips
bench: bench-clips
bench-clips: model | sysdeps
	@if [ -f $(ASSET_MIRROR)/devset/labels.csv ]; then \
	  OPENBLAS_NUM_THREADS=1 $(BIN)/python -m tools clips-bench --devset $(ASSET_MIRROR)/devset --out out/bench; \
	else echo "bench-clips: skipped: needs devset/ of the asset mirror (EDGE_AUDIO_ASSETS)"; fi

# a broker outage of 60 s: from the broker's return to the backlog delivered (the default back-off), 3 rounds
.PHONY: bench-recovery
bench: bench-recovery
bench-recovery: $(VENV)/.device | sysdeps
	$(BIN)/python -m tools recovery-bench --outage 60 --rounds 3 --out out/bench

# many sources in one daemon pinned to one core (WAV replays at real time, MQTT to a Mosquitto started here): the
# largest N with <= 1 % of windows missed, CPU and RSS per source, fairness, N single-source daemons beside one
# daemon with N sources, and an estimate for a Pi with a USB Coral (~5 min)
.PHONY: bench-streams
bench: bench-streams
bench-streams: model | sysdeps
	@$(BIN)/python -m tools fetch samples --dest out/audio >/dev/null
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m tools streams-bench --audio out/audio/speech_whistling2.wav --out out/bench

# onset -> start at a real broker, and false starts before/after the fast onset (~6 min: the audio plays at real
# time); needs the asset mirror's devset/ and labelled recordings
ASSET_MIRROR = $${EDGE_AUDIO_ASSETS:-../shared}
.PHONY: bench-onset
bench: bench-onset
bench-onset: model | sysdeps
	@if [ -f $(ASSET_MIRROR)/devset/labels.csv ] && [ -f $(ASSET_MIRROR)/audio/dog_975ms.wav ]; then \
	  OPENBLAS_NUM_THREADS=1 $(BIN)/python -m tools onset --devset $(ASSET_MIRROR)/devset --audio $(ASSET_MIRROR)/audio \
	    --out out/bench; \
	else echo "bench-onset: skipped: needs devset/ and audio/ of the asset mirror (EDGE_AUDIO_ASSETS)"; fi

clean:
	rm -rf $(VENV) out .pytest_cache

# the int8 YAMNet built by `python -m tools build` (its default source: Coral's twin, fetched into out/models)
# beside Coral's int8 twin: per-invoke time side by side, then
# the whole pipeline for the built bundle (builds it first if out/yamnet-int8 is missing; needs the tools extra)
INT8_BUNDLE = out/yamnet-int8
.PHONY: bench-int8
bench: bench-int8
bench-int8: model $(VENV)/.all
	@test -f $(INT8_BUNDLE)/manifest.json || $(BIN)/python -m tools build --out $(INT8_BUNDLE)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m tools speed $(INT8_BUNDLE) \
	  $$($(BIN)/python -c 'from edge.model.bundle import default_bundle_path as p; print(p())') --seconds 10
	OPENBLAS_NUM_THREADS=1 $(BIN)/edge-audio bench --bundle $(INT8_BUNDLE) --delegate cpu --seconds 5

# the device runtime on aarch64 (Debian 12 arm64 = Raspberry Pi OS bookworm, Python 3.11) under qemu-user: the
# deploy tool's offline wheelhouse installed by the device-side release step with the network off, selftest, real
# inference with the expected classes asserted, emulated timing beside this host's. Needs root; first run ~7 min
# and ~500 MB under out/. .ci/run runs it after the suite.
.PHONY: arm-check
arm-check: $(VENV)/.device
	@$(BIN)/python -c 'import packaging' 2>/dev/null || $(BIN)/pip install -q packaging
	PYTHON=$(abspath $(BIN)/python) nice -n 10 bash tools/deploy/arm_check.sh

# the Edge TPU probe, cold (a child process loads the runtime: a first start) and warm (the cached verdict: every
# restart after it). No Coral needed: a fake runtime built with cc stands in for a mismatched libedgetpu.
.PHONY: bench-probe
bench: bench-probe
bench-probe: $(VENV)/.device
	@EDGE_AUDIO_ASSETS=$(ASSET_MIRROR) $(BIN)/python tests/probe_timing.py --repeat 5

# the recorder under load: a few hundred simulated devices publishing events and metrics at QoS 1 through a
# Mosquitto started here into the real `edge-audio recorder`, on SQLite then PostgreSQL (started here, with fsync):
# event messages stored a second and p99 publish -> stored per offered rate (500 to 4500 a second, until one is not
# kept up), and the recorder's RSS as rows accumulate (~2.5 min)
.PHONY: bench-recorder
bench: bench-recorder
bench-recorder: $(VENV)/.all | sysdeps
	$(BIN)/python -m tools recorder-bench --out out/bench

# last: every target of the parts above, with its figure, in one place
.PHONY: bench-targets
bench: bench-targets
bench-targets:
	@$(BIN)/python -m tools bench-targets out/bench
