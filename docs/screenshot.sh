#!/usr/bin/env bash
# Take a screenshot of one page of the built documentation in a headless Chromium that
# cannot reach the network, to see that its equations are drawn with no network.
#
#   docs/screenshot.sh [PAGE] [OUT]
#
# PAGE is the page's folder in the site (default lecture/adam, whose equations use
# fractions, square roots and parentheses that stretch); OUT is the PNG to write
# (default fitjax-docs.png). The site is built first (mkdocs build --strict, into a
# temporary folder) unless SITE names a site already built. Every request to another
# host goes to a proxy that does not exist, so what the screenshot shows is what a
# reader with no network sees.
#
# Needs chromium (Debian: apt-get install chromium). Equations are MathML, drawn by the
# browser with a math font; on a machine without one (Debian: apt-get install
# fonts-lmodern) brackets do not stretch around fractions.
set -euo pipefail

page="${1:-lecture/adam}"
out="$(realpath -m "${2:-fitjax-docs.png}")"
root="$(cd "$(dirname "$0")/.." && pwd)"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
  echo "docs/screenshot.sh: no chromium on PATH (Debian: apt-get install chromium)" >&2
  exit 1
fi

site="${SITE:-}"
if [ -z "$site" ]; then
  site="$(mktemp -d)"
  trap 'rm -rf "$site"' EXIT
  (cd "$root" && NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --quiet -d "$site")
fi
html="$site/${page%/}/index.html"
[ -f "$html" ] || { echo "docs/screenshot.sh: no page $html" >&2; exit 1; }

"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --proxy-server=http://127.0.0.1:9 --proxy-bypass-list='<-loopback>' \
  --window-size=1200,1600 --screenshot="$out" "file://$html" >/dev/null 2>&1
echo "$out ($page, $(grep -o '<math ' "$html" | wc -l) equations)"
