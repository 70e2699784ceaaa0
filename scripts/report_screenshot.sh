#!/usr/bin/env bash
# Makes docs/report.png, the README's picture of `maskclip report`: 80 synthetic scenes (plus one broken
# file) labelled offline by the bundled tiny CLIP with --overlays, the report page, and a headless
# Chromium screenshot of it. Run from the repository root: bash scripts/report_screenshot.sh
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -c "from pathlib import Path; from maskclip_cli.synthetic.export import write_split; write_split(Path('$work/world'), seed=5, count=80, layout='plain')"
printf 'not a jpeg' > "$work/world/images/broken-upload.jpg"
A=maskclip_cli/assets/synthetic
python -m maskclip_cli label "$work/world/images" --out "$work/labels" --overlays --no-progress --workers 0 \
    --model $A/maskclip-synthetic-vit.json --checkpoint $A/maskclip-synthetic-vit.pt --short-side 96 \
    --classes red,orange,yellow,green,cyan,blue,purple,white --background background || true  # exit 1: the broken file
python -m maskclip_cli report "$work/labels" --out "$work/report.html" --per-class 10 --no-progress
mkdir -p docs
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,2000 \
    --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
python -c "from PIL import Image; im = Image.open('docs/report.png'); im.convert('RGB').save('docs/report.png', optimize=True)"
echo "wrote docs/report.png"
