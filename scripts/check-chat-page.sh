#!/usr/bin/env bash
# Checks the ASP.NET sample's chat page in a real headless browser: starts the sample on loopback with the demo model,
# adds two documents, opens /chat?ask=...&then=... in headless Chromium (which selects every document and asks two
# questions, the second a follow-up), and checks the DOM it ends with: two streamed answers, each with cached/computed
# token counts, and the follow-up reusing the first turn (more cached tokens).
# Needs chromium (scripts/install-chromium.sh). Usage: scripts/check-chat-page.sh [port]
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-5391}"
command -v chromium >/dev/null || { echo "chromium is not installed: run scripts/install-chromium.sh"; exit 2; }

dotnet build samples/KVLink.AspNetCore -c Release -v q -nologo >/dev/null
APP=samples/KVLink.AspNetCore/bin/Release/net10.0/KVLink.AspNetCore.Sample.dll
WORK="$(mktemp -d)"
dotnet "$APP" --Port "$PORT" --KvLink:DType Float32 --KvLink:PrecomputeSlots 2 --Logging:LogLevel:Default Warning >"$WORK/app.log" 2>&1 &
APP_PID=$!
trap 'kill $APP_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "the sample did not start:"; cat "$WORK/app.log"; exit 1; }

post() { curl -sf -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/documents" >/dev/null; }
post '{"title":"Quelmar","text":"Quelmar was born in Ostrava. Quelmar works for Brindlecorp."}'
post '{"title":"Brindlecorp","text":"Brindlecorp is based in Tarsk."}'

URL="http://127.0.0.1:$PORT/chat?ask=Where%20was%20Quelmar%20born%3F&then=Where%20is%20Brindlecorp%20based%3F"
# The answers stream in after the page's load event, so the DOM is read over the DevTools protocol once the page
# marks itself done (scripts/cdp_dom.py), not with --dump-dom.
DEBUG_PORT=$((PORT + 1))
chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --remote-debugging-port="$DEBUG_PORT" \
  --user-data-dir="$WORK/profile" "$URL" >"$WORK/chromium.log" 2>&1 &
CHROME_PID=$!
trap 'kill $APP_PID $CHROME_PID 2>/dev/null || true; wait $CHROME_PID 2>/dev/null || true; rm -rf "$WORK" 2>/dev/null || true' EXIT
python3 scripts/cdp_dom.py "$DEBUG_PORT" "http://127.0.0.1:$PORT/chat" 180 >"$WORK/dom.html"

python3 - "$WORK/dom.html" <<'PY'
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
def fail(msg):
    print("FAIL:", msg); print(dom[:4000]); sys.exit(1)
if 'data-done="true"' not in dom: fail("the page did not finish answering (body data-done is not true)")
answers = re.findall(r'<div class="answer">(.*?)</div>', dom, re.S)
stats = re.findall(r'<div class="stats" data-cached="(\d+)" data-computed="(\d+)">(.*?)</div>', dom, re.S)
if len(answers) != 2 or len(stats) != 2: fail(f"expected 2 answers with stats, got {len(answers)} answers and {len(stats)} stats")
if not all(a.strip() for a in answers): fail("an answer is empty")
(c1, k1, s1), (c2, k2, s2) = [(int(c), int(k), s) for c, k, s in stats]
if not c2 > c1: fail(f"the follow-up did not reuse the first turn: cached {c1} then {c2}")
print("OK: two streamed answers;", s1.strip(), "|", s2.strip())
PY
