#!/bin/sh
# Regenerate docs/accuracy.md: the pipeline evaluated on every labelled file of ../shared/media
# (about 5 minutes on 2 CPU cores at 5 fps). The JSON report goes to out/accuracy.json.
#   bench/accuracy.sh            # 5 fps, as documented
#   FPS=10 bench/accuracy.sh     # another analysis rate
# Written to a temporary file first, so a failed run leaves the committed figures in place.
set -eu
cd "$(dirname "$0")/.."
FPS="${FPS:-5}"
MEDIA="${MEDIA:-../shared/media}"
mkdir -p out
.venv/bin/python -m service.evaluate --labels "$MEDIA/labels.yaml" --media "$MEDIA" --fps "$FPS" \
    --markdown --out out/accuracy.json > docs/accuracy.md.tmp
mv docs/accuracy.md.tmp docs/accuracy.md
echo "docs/accuracy.md and out/accuracy.json written" >&2
