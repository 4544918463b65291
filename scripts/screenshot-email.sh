#!/usr/bin/env bash
# Renders the code email's HTML part (examples/render_email) and photographs
# it with headless Chromium into docs/email-<lang>.png.
#   ./scripts/screenshot-email.sh [lang ...]     (default: en pt-BR)
# Needs Debian's chromium package (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(en pt-BR)
for l in "${langs[@]}"; do
  cargo run --quiet --example render_email -- "$l" >"$work/email-$l.html"
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --hide-scrollbars --window-size=640,460 \
    --screenshot="$PWD/docs/email-$l.png" "file://$work/email-$l.html" 2>/dev/null
  echo "docs/email-$l.png"
done
