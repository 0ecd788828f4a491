#!/usr/bin/env bash
# The report in a real browser: the MNIST demo trains the lenet on a small slice
# (deterministic: fixed seed, 2 threads) with --report DIR, then headless Chromium
# loads DIR/report.html from disk, once for a screenshot (kept:
# DIR/report_screenshot.png) and once to dump the DOM after the page's script ran.
# The page's script writes "report-ok N curves: name ..." at its foot, or
# "report-errors: ..." with any script error it caught and any curve without
# points; the test fails on errors, on a curve missing from the list, on a
# picture not embedded, on a timeline whose rectangles do not match the step's
# trace.json, and on anything the page would fetch from elsewhere.
# Everything stays in DIR, whose path is printed first (on success all but the
# browser's profile).
# Usage: report.sh MNIST_BINARY DATA_DIR
set -euo pipefail
bin=$1 data=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-report.XXXXXX")
dir=$(cd "$dir" && pwd -P)
echo "report: the run, the page, the screenshot and the browser's logs are in $dir"
fail() {
  echo "report: FAIL: $*"
  echo "report: the evidence is in $dir"
  exit 1
}

"$bin" --data "$data" --net lenet --limit 3000 --test-limit 500 --epochs 2 --threads 2 --seed 42 --report "$dir" \
  >"$dir/mnist.log" 2>&1 || { cat "$dir/mnist.log"; fail "the demo failed"; }
grep -E '^(diagnosis|wrote|test accuracy)' "$dir/mnist.log"
for f in run.jsonl report.html trace.json tape.txt mnist_errors.png mnist_filters.png mnist_features.png; do
  [ -s "$dir/$f" ] || fail "$f was not written"
done

browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || fail "no chromium (tests/run.sh installs Debian's chromium)"
# root needs --no-sandbox; a profile of its own in DIR; /dev/shm may be small in a container.
# Generous time limits: a loaded 2-core machine starts Chromium slowly.
chrome() {
  timeout 300 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --user-data-dir="$dir/chromium-profile" --hide-scrollbars "$@"
}
url="file://$dir/report.html"
chrome --screenshot="$dir/report_screenshot.png" --window-size=1280,3000 "$url" >"$dir/chromium-screenshot.log" 2>&1 ||
  fail "chromium could not take the screenshot (see chromium-screenshot.log)"
[ -s "$dir/report_screenshot.png" ] || fail "no screenshot"
chrome --dump-dom --virtual-time-budget=10000 "$url" >"$dir/dom.html" 2>"$dir/chromium-dom.log" ||
  fail "chromium could not load the page (see chromium-dom.log)"

# the status paragraph as the script left it (its own source also holds the words, so match the element)
status=$(grep -oE 'id="status">report-(ok [0-9]+ curves:|errors:)[^<]*' "$dir/dom.html" || true)
status=${status#id=\"status\">}
[ -n "$status" ] || fail "the page's check did not run: no 'report-ok' or 'report-errors' in the DOM (dom.html)"
echo "report: the page says: $status"
case $status in report-errors*) fail "the page reported errors" ;; esac

# the curves a lenet run must have: loss and accuracy (train and test), the learning rate, the update
# ratio of each layer with weights, |dy| at the first and last layer, dead units where a ReLU follows
need="loss/train loss/test acc/train acc/test lr update/0 update/2 update/7 update/10 dy/0 dy/10 dead/0 dead/2 dead/8"
names=" ${status#*curves: } "
for c in $need; do
  [[ $names == *" $c "* ]] || fail "the curve $c is missing"
done
# the sections, the graph's two panels and the three pictures, embedded
for s in 'id="diagnosis"' 'id="histograms"' 'class="graph-time"' 'class="graph-dy"'; do
  grep -q "$s" "$dir/dom.html" || fail "no $s in the page"
done
n=$(grep -o 'src="data:image/png;base64,iVBOR' "$dir/dom.html" | wc -l)
[ "$n" -eq 3 ] || fail "$n pictures embedded, not 3"
# the timeline of one step, as the browser laid it out: on each row as many rectangles of each kind as trace.json
# has complete events of that kind on that thread (on main: the forwards, the VJPs, the user's spans "batch",
# "run log" and "optimizer step" (the tape dump is of the next step), the workers' loops the main thread ran), a row for omp worker 1 (the run has 2 threads), and
# the page's script found every rectangle with a width on the screen
python3 - "$dir/dom.html" "$dir/trace.json" <<'PY' || fail "the timeline does not match trace.json"
import collections, json, re, sys
from html.parser import HTMLParser

class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.events = collections.Counter()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "rect" and a.get("class") == "tl-event": self.events[a.get("data-track"), a.get("data-kind")] += 1

dom = open(sys.argv[1], encoding="utf-8").read()
d = Dom()
d.feed(dom)
trace = json.load(open(sys.argv[2], encoding="utf-8"))["traceEvents"]
names = {e["tid"]: e["args"]["name"] for e in trace if e["ph"] == "M" and e["name"] == "thread_name"}
want = collections.Counter((names[e["tid"]], e["cat"]) for e in trace if e["ph"] == "X")
fails = []
if d.events != want: fails.append(f"events by row and kind: got {sorted(d.events.items())}, want {sorted(want.items())}")
main = sum(n for (row, kind), n in d.events.items() if row == "main" and kind in ("forward", "backward", "user"))
spans = sorted(e["name"] for e in trace if e["ph"] == "X" and e.get("cat") == "user")
if spans != ["batch", "optimizer step", "run log"]: fails.append(f"the user's spans in trace.json: {spans}")
if not want["omp worker 1", "worker"] or not d.events["omp worker 1", "worker"]:
    fails.append("no omp worker 1 row with events (the run has 2 threads)")
total = sum(want.values())
m = re.search(r"timeline-ok (\d+) of (\d+) events drawn", dom)
if not m or int(m.group(1)) != total or int(m.group(2)) != total:
    fails.append(f"the page's check of the timeline: {m.group(0) if m else 'not run'}, want {total} of {total}")
if 'class="tl-arena-line"' not in dom: fails.append("no arena line")
if len(re.findall(r'class="tl-top-row"', dom)) != 5: fails.append("not five rows of slowest nodes")
for f in fails: print("report: timeline:", f)
if fails: sys.exit(1)
print(f"report: timeline ok: {main} rectangles on main (forward, backward and the user's spans), {total} in all, "
      f"rows {sorted(set(r for r, _ in d.events))}")
PY
# self-contained: nothing fetched from elsewhere
if grep -qiE '(src|href)="(https?:)?//' "$dir/report.html"; then fail "the page refers to something elsewhere"; fi
rm -rf "$dir/chromium-profile" # megabytes of the browser's own; the rest stays
echo "report: ok ($(wc -c <"$dir/report.html") bytes; screenshot $dir/report_screenshot.png)"
