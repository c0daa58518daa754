#!/usr/bin/env bash
# Checks the ASP.NET sample's chat page in a real headless browser, and takes a screenshot of each step: starts the
# sample on loopback with the demo model, posts two documents, opens /chat in headless Chromium and drives it over the
# DevTools protocol (scripts/cdp_dom.py):
#   1. the page starts with every document selected;
#   2. a question asked with no document selected is not sent: the page warns, and the question stays in its box;
#   3. adding a document keeps the selections made (an unticked document stays unticked) and selects the new one;
#   4. a question and a follow-up stream in with their token counts, answered from the documents, the follow-up
#      reusing the first turn;
#   5. an error (a document the server does not know) is shown as a sentence, not as JSON.
# Needs chromium (scripts/install-chromium.sh). Usage: scripts/check-chat-page.sh [port] [screenshot folder]
# Screenshots: artifacts/chat-page/01-start.png ... 05-error.png unless a folder is given.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-5391}"
SHOTS="${2:-artifacts/chat-page}"
command -v chromium >/dev/null || { echo "chromium is not installed: run scripts/install-chromium.sh"; exit 2; }
mkdir -p "$SHOTS"

dotnet build samples/KVLink.AspNetCore -c Release -v q -nologo >/dev/null
APP=samples/KVLink.AspNetCore/bin/Release/net10.0/KVLink.AspNetCore.Sample.dll
WORK="$(mktemp -d)"
dotnet "$APP" --Port "$PORT" --KvLink:DType Float32 --KvLink:PrecomputeSlots 2 --Logging:LogLevel:Default Warning >"$WORK/app.log" 2>&1 &
APP_PID=$!
trap 'kill $APP_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "the sample did not start:"; cat "$WORK/app.log"; exit 1; }

post() { curl -sf -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/documents" >/dev/null; }
# The demo model knows only its corpus's names and sentence shapes, so the documents use them (as in getting-started).
post '{"title":"Thufas","text":"Thufas was born in Zineford. Thufas works for Pentek."}'
post '{"title":"Pentek","text":"Pentek is a company based in Namuport."}'

DEBUG_PORT=$((PORT + 1))
chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --remote-debugging-port="$DEBUG_PORT" \
  --user-data-dir="$WORK/profile" "http://127.0.0.1:$PORT/chat" >"$WORK/chromium.log" 2>&1 &
CHROME_PID=$!
trap 'kill $APP_PID $CHROME_PID 2>/dev/null || true; wait $CHROME_PID 2>/dev/null || true; rm -rf "$WORK" 2>/dev/null || true' EXIT

python3 - "$DEBUG_PORT" "http://127.0.0.1:$PORT/chat" "$SHOTS" <<'PY'
import json, os, sys
sys.path.insert(0, "scripts")
from cdp_dom import Page
port, url, shots = int(sys.argv[1]), sys.argv[2], sys.argv[3]
page = Page(port, url)
js = page.evaluate
def fail(msg):
    print("FAIL:", msg); print(js("document.body.innerText")); sys.exit(1)
def checked(): return js('[...document.querySelectorAll("#docs input")].map(c => c.checked)')
def shot(name):
    path = os.path.join(shots, name); page.screenshot(path); print("screenshot", path)
def ask(question):
    js(f'$("question").value = {json.dumps(question)}; $("ask").requestSubmit(); true')

page.wait('document.body.dataset.ready === "true"', 60, "the page to load")
# 1. Every document starts selected.
if checked() != [True, True]: fail(f"the page should start with both documents selected, not {checked()}")
shot("01-start.png")

# 2. No document selected: a warning, nothing sent, the question kept.
js('document.querySelectorAll("#docs input").forEach(c => c.checked = false); true')
ask("Where was Thufas born?")
page.wait('document.getElementById("status").dataset.kind === "warning"', 10, "the no-document warning")
if js('document.querySelectorAll("#log .turn").length') != 0: fail("a question with no document selected was sent")
if js('$("question").value') != "Where was Thufas born?": fail("the question was lost")
warning = js('$("status").textContent')
shot("02-no-document-warning.png")

# 3. Adding a document keeps the choices: Thufas ticked, Pentek unticked, the new one ticked.
js('document.querySelectorAll("#docs input")[0].checked = true; document.querySelector("details").open = true;'
   '$("doc-title").value = "Zineford"; $("doc-text").value = "Zineford is a city in Gebreland."; $("doc-add").click(); true')
page.wait('document.querySelectorAll("#docs input").length === 3', 30, "the added document")
if checked() != [True, False, True]: fail(f"adding a document changed the selections: {checked()}")
shot("03-document-added.png")

# 4. A question and a follow-up over every document.
js('document.querySelectorAll("#docs input").forEach(c => c.checked = true); true')
ask("Where was Thufas born?")
page.wait('document.querySelectorAll("#log .stats[data-cached]").length === 1', 120, "the first answer")
ask("Where is Pentek based?")
page.wait('document.querySelectorAll("#log .stats[data-cached]").length === 2', 120, "the follow-up")
answers = js('[...document.querySelectorAll("#log .answer")].map(a => a.textContent)')
stats = js('[...document.querySelectorAll("#log .stats")].map(s => [+s.dataset.cached, s.textContent])')
if len(answers) != 2 or not all(a.strip() for a in answers): fail(f"expected two answers, got {answers}")
# With the documents selected from the start, the answers come from them (the demo model answers these two correctly).
if "Zineford" not in answers[0] or "Namuport" not in answers[1]: fail(f"the answers are not the documents' (Zineford, Namuport): {answers}")
if not stats[1][0] > stats[0][0]: fail(f"the follow-up did not reuse the first turn: cached {stats[0][0]} then {stats[1][0]}")
shot("04-answers.png")

# 5. An error from the server, as a sentence: a selected document the server does not know.
js('const l = document.createElement("label"); const c = document.createElement("input"); c.type = "checkbox";'
   'c.value = "no-such-document"; c.checked = true; l.append(c, " (deleted)"); $("docs").append(l); true')
ask("Which country is Zineford in?")
page.wait('document.getElementById("status").dataset.kind === "error"', 60, "the error")
error = js('$("status").textContent')
if "no-such-document" not in error or "{" in error: fail(f"the error is not a sentence naming the document: {error}")
if js('document.querySelectorAll("#log .turn").length') != 2: fail("the failed question left a turn in the log")
shot("05-error.png")
print("OK: starts selected; warns with none:", warning, "| keeps selections on add | answers:", " / ".join(a.strip() for a in answers),
      "| cached", stats[0][0], "then", stats[1][0], "| error:", error)
PY
