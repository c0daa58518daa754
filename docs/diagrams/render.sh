#!/usr/bin/env bash
# Renders the Graphviz diagrams of docs/diagrams/*.dot to SVG next to them (committed, shown by docs/architecture.md).
# Needs Graphviz: apt-get install -y graphviz (Debian/Ubuntu), brew install graphviz (macOS).
set -euo pipefail
cd "$(dirname "$0")"
command -v dot >/dev/null || { echo "Graphviz 'dot' not found: apt-get install -y graphviz" >&2; exit 1; }
for f in *.dot; do
  dot -Tsvg "$f" -o "${f%.dot}.svg"
  echo "rendered ${f%.dot}.svg"
done
