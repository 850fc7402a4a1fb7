#!/bin/sh
# Regenerate docs/performance.md: the throughput benchmark (plain, fast, its levers and OpenVINO at
# 8 live streams, each lever alone on plain, two interleaved repeats), the accuracy of the lever
# variants against plain, and the page made from both JSON files (40-70 minutes on 2 CPU cores;
# run it on an otherwise idle box). The `ov` variants convert models/yolov8n_int8.tflite into
# models/converted on first use.
#   bench/performance.sh
#   SECONDS_PER_RUN=30 bench/performance.sh
#   PLAIN_FROM=out/accuracy_levers.json bench/performance.sh  # plain's accuracy from an earlier run
# Written to a temporary file first, so a failed run leaves the committed page in place.
set -eu
cd "$(dirname "$0")/.."
RUN="${SECONDS_PER_RUN:-15}"
PLAIN=""
[ -n "${PLAIN_FROM:-}" ] && PLAIN="--plain-from $PLAIN_FROM"
mkdir -p out
.venv/bin/python bench/throughput.py --streams 8 --seconds "$RUN" --warmup 12 \
    --mode plain,fast,fast-wristvideo,fast-writer,fast-hips,fast-strain,fast-backoff,fast-videosz,fast-budget,fast-rect,fast+ovq --repeat 2 --levers \
    --json out/throughput.json
# shellcheck disable=SC2086  # $PLAIN is empty or two words
.venv/bin/python bench/accuracy_levers.py $PLAIN \
    --mode plain,fast,fast-wristvideo,fast-hips,fast-backoff,fast-videosz,fast-budget,fast-rect,fast-wristnative,fast-clock,fast-every3,fast-track,fast-retry,plain+ov,plain+ovq,fast+ovq \
    --json out/accuracy_levers.json.new
mv out/accuracy_levers.json.new out/accuracy_levers.json
.venv/bin/python bench/report.py out/throughput.json --accuracy out/accuracy_levers.json \
    --notes bench/performance_notes.md > docs/performance.md.tmp
mv docs/performance.md.tmp docs/performance.md
echo "docs/performance.md, out/throughput.json and out/accuracy_levers.json written" >&2
