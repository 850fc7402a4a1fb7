#!/bin/sh
# Regenerate docs/performance.md: the throughput benchmark (plain and fast at 1, 2, 4 and 8 live
# streams, and each lever alone at 8), the accuracy of the lever variants against plain, and the
# page made from both JSON files (about 25 minutes on 2 CPU cores; run it on an otherwise idle box).
#   bench/performance.sh
#   SECONDS_PER_RUN=30 bench/performance.sh
# Written to a temporary file first, so a failed run leaves the committed page in place.
set -eu
cd "$(dirname "$0")/.."
RUN="${SECONDS_PER_RUN:-20}"
mkdir -p out
.venv/bin/python bench/throughput.py --streams 1,2,4,8 --mode plain,fast --levers --seconds "$RUN" \
    --warmup 8 --json out/throughput.json
.venv/bin/python bench/accuracy_levers.py --mode plain,fast,fast+every3,fast+every3-slow,fast+pair,fast-track \
    --json out/accuracy_levers.json
.venv/bin/python bench/report.py out/throughput.json --accuracy out/accuracy_levers.json \
    --notes bench/performance_notes.md > docs/performance.md.tmp
mv docs/performance.md.tmp docs/performance.md
echo "docs/performance.md, out/throughput.json and out/accuracy_levers.json written" >&2
