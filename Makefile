# Two entry points (see README): `make demo` runs the main job on the built-in
# clip, `make test` runs the suite. Both create .venv and install what they need.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
SHARED_MODEL ?= ../shared/models/yolov8n_int8.tflite

.PHONY: setup models video-model browser demo test lint accuracy performance

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# --no-compile: byte-compiling all of torch took half a minute of every fresh install;
	# Python compiles the modules actually imported on first use.
	$(BIN)/pip install --quiet --no-compile -e ".[test]"
	touch $@

# Detector weights: the project's git-ignored models/ folder is searched before
# any download; where ../shared holds the int8 TFLite model (CI, development),
# put it there.
models:
	@mkdir -p models
	@if [ -f "$(SHARED_MODEL)" ] && [ -z "$$(ls models 2>/dev/null)" ]; then \
		cp "$(SHARED_MODEL)" models/ && echo "models/: using $(SHARED_MODEL)"; fi

# Where this CPU has no int8 dot products (an AVX2-only x86), video frames run faster on the int8
# OpenVINO model made from the TFLite one (`--video-weights auto`, docs/performance.md): made here
# once (about 30 s). Elsewhere nothing is done; a failure leaves video frames on the TFLite model.
VIDEO_MODEL = models/converted/yolov8n_int8_ovint8_openvino_model
video-model: $(BIN)/.installed models
	@if [ -f models/yolov8n_int8.tflite ] && [ ! -d $(VIDEO_MODEL) ] && \
		$(BIN)/python -c "import sys; from vision.detect import int8_dot_products as f; sys.exit(f() is not False)"; \
	then echo "models/: this CPU has no int8 dot products: making $(VIDEO_MODEL) for video frames"; \
		$(BIN)/python -m vision.convert models/yolov8n_int8.tflite --int8 > /dev/null 2>models/convert.log \
		|| echo "models/: not made (models/convert.log): video frames stay on the TFLite model"; fi

setup: $(BIN)/.installed models video-model

demo: setup
	$(BIN)/postwatch analyze demo --out out/demo --annotate --dump

lint: setup
	$(BIN)/ruff check .

# Debian's chromium and chromedriver for the review page's browser test; without root
# (or apt) the install is skipped and that test skips with its reason.
browser:
	-@bash scripts/install-browser.sh

# -n auto: one pytest worker a core (pytest-xdist). The suite is CPU-bound; on 2 cores it took
# 8.5 minutes against about 12 in one process.
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n auto

# Regenerates docs/accuracy.md from ../shared/media (about 5 minutes on 2 cores).
accuracy: setup
	bash bench/accuracy.sh

# Regenerates docs/performance.md: throughput of N live streams and the levers' accuracy
# (40-70 minutes on 2 cores; run it on an idle machine).
performance: setup
	bash bench/performance.sh
