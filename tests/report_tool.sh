#!/usr/bin/env bash
# The report tool on the hand-written run log tests/report_sample.jsonl, no
# browser needed: the page parses as HTML with every element closed, each curve
# is there with as many points as the log has finite values, the findings come
# first (errors before warnings) with their remedies, the histograms and the
# graph's nodes are all drawn, a picture is embedded byte for byte and a missing
# one is named, nothing is fetched from elsewhere; the timeline of the
# hand-written trace tests/report_sample_trace.json has each event where the
# hand-computed pixels put it, the arena's line and the slowest nodes, and a
# trace that cannot be read, is not JSON or holds no events is named in a note;
# a log that is not a run log and a missing one are refused with a message.
# Usage: report_tool.sh REPORT_BINARY TESTS_SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# a 2x1 PNG to embed
python3 - "$out/tiny.png" <<'PY'
import struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"\0\xff\0\0\0\0\xff"
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)) + \
      chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
"$bin" "$src/report_sample.jsonl" "$out/r.html" "$out/tiny.png" "$out/absent.png"

python3 - "$out/r.html" "$out/tiny.png" "$src/report_sample.jsonl" <<'PY'
import base64, json, sys
from html.parser import HTMLParser

html, png, log = open(sys.argv[1], encoding="utf-8").read(), open(sys.argv[2], "rb").read(), sys.argv[3]
VOID = {"meta", "br", "img", "hr", "link", "input", "col", "wbr", "source", "area", "base", "embed", "track"}
SVG_EMPTY = {"rect", "line", "polyline", "circle", "path"}  # written as <x .../>

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.curves, self.hists, self.nodes, self.imgs, self.text = [], [], {}, 0, 0, [], []
        self.refs = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.element(tag, a)
        if tag not in VOID: self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        if tag not in VOID and tag not in SVG_EMPTY: self.errors.append(f"<{tag}/> self-closed")
        self.element(tag, dict(attrs))
    def element(self, tag, a):
        if "curve" in (a.get("class") or "").split(): self.curves[a.get("data-name")] = len(a.get("points", "").split())
        if a.get("class") == "hist": self.hists += 1
        if a.get("class") == "node": self.nodes += 1
        if tag == "img": self.imgs.append(a.get("src", ""))
        for k in ("src", "href"):
            if a.get(k) and not a[k].startswith(("data:", "#")): self.refs.append(a[k])
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else: self.stack.pop()
    def handle_data(self, d): self.text.append(d)

p = Page()
p.feed(html)
p.close()
fails = list(p.errors)
if p.stack: fails.append(f"never closed: {p.stack}")

# the curves and their points, from the log: a point for each finite value
recs = [json.loads(l) for l in open(log, encoding="utf-8") if l.strip()]
steps = [r for r in recs if r["type"] == "step"]
tests = [r for r in recs if r["type"] == "test"]
want = {}
for k in ("loss", "acc"):
    want[f"{k}/train"] = sum(s.get(k) is not None for s in steps)
    want[f"{k}/test"] = sum(t.get(k) is not None for t in tests)
want["lr"] = len(steps)
for layer in recs[0]["layers"]:
    n = layer["name"]
    L = [next((l for l in s["layers"] if l["name"] == n), {}) for s in steps]
    upd = [l["params"][0]["update"] for l in L if l.get("params")]
    if upd: want[f"update/{n}"] = sum(u is not None and u > 0 for u in upd)
    for key, get in (("dy", lambda l: l.get("dy")), ("dead", lambda l: l.get("dead")),
                     ("act", lambda l: (l.get("act") or {}).get("rms"))):
        v = [get(l) for l in L]
        if any(x is not None for x in v): want[f"{key}/{n}"] = sum(x is not None for x in v)
if p.curves != want:
    fails.append(f"curves: got {sorted(p.curves.items())}, want {sorted(want.items())}")
if want.get("dy/5") != 4: fails.append("the sample log should hold one null dy (layer 5)")

text = " ".join(" ".join(p.text).split())
finds = [r for r in recs if r["type"] == "finding"]
for f in finds:
    for k in ("message", "remedy"):
        if " ".join(f[k].split()) not in text: fails.append(f"finding's {k} not shown: {f[k]}")
at = [text.find(" ".join(f["message"].split())) for f in finds]
if not (0 <= text.find("Diagnosis") < min(at) and text.find("Training") > max(at)):
    fails.append("the findings are not first")
hist = [s for s in steps if "hist" in s][-1]["hist"]
if p.hists != len(hist): fails.append(f"{p.hists} histograms, want {len(hist)}")
nodes = [r for r in recs if r["type"] == "graph"][-1]["nodes"]
if p.nodes != 2 * len(nodes): fails.append(f"{p.nodes} graph nodes, want 2 panels of {len(nodes)}")
if len(p.imgs) != 1 or base64.b64decode(p.imgs[0].split(",", 1)[1]) != png:
    fails.append("the picture is not embedded byte for byte")
if "absent.png: missing" not in text: fails.append("the missing picture is not named")
if p.refs: fails.append(f"refers to {p.refs}")
if fails:
    print("report_tool: FAIL\n  " + "\n  ".join(fails))
    sys.exit(1)
print(f"report_tool: ok: {len(p.curves)} curves, {p.hists} histograms, {p.nodes} graph boxes, "
      f"{len(finds)} findings")
PY

# no --trace: no timeline
if grep -q 'id="timeline"' "$out/r.html"; then echo "report_tool: a timeline without --trace"; exit 1; fi

# the timeline of the hand-written trace tests/report_sample_trace.json: 1400 µs from the first event to the last
# end, on 700 px from x=100, so x = 100 + ts/2 and width = dur/2; on main the user spans in lane 0 (y=34), the
# nodes in lane 1 (y=52), the worker span inside the first node in lane 2 (y=70); the worker's row below (y=96)
"$bin" --trace "$src/report_sample_trace.json" "$src/report_sample.jsonl" "$out/t.html" >/dev/null
python3 - "$out/t.html" "$src/report_sample_trace.json" <<'PY'
import json, sys
from html.parser import HTMLParser

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rects, self.rows, self.arena, self.title, self.stack, self.errors, self.text = [], [], None, None, [], [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "rect" and a.get("class") == "tl-event":
            self.rects.append([a["data-track"], a["data-kind"], float(a["x"]), float(a["y"]), float(a["width"]), ""])
        if tag == "tr" and a.get("class") == "tl-top-row": self.rows.append([a["data-node"]])
        if tag == "title": self.title = ""
        if tag not in ("meta", "br", "img"): self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        a = dict(attrs)
        if tag == "path" and a.get("class") == "tl-arena-line": self.arena = a["d"]
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag: self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else: self.stack.pop()
        if tag == "title" and self.title is not None:
            if self.stack and self.stack[-1] == "rect" and self.rects: self.rects[-1][5] = self.title
            self.title = None
    def handle_data(self, d):
        if self.title is not None: self.title += d
        if self.stack and self.stack[-1] == "td" and self.rows: self.rows[-1].append(d)
        self.text.append(d)

p = Page()
p.feed(open(sys.argv[1], encoding="utf-8").read())
fails = p.errors + ([f"never closed: {p.stack}"] if p.stack else [])
# every complete event drawn, on its thread's row: counted from the file
trace = json.load(open(sys.argv[2], encoding="utf-8"))["traceEvents"]
names = {e["tid"]: e["args"]["name"] for e in trace if e["ph"] == "M" and e["name"] == "thread_name"}
want = sorted((names[e["tid"]], e["cat"]) for e in trace if e["ph"] == "X")
got = sorted((r[0], r[1]) for r in p.rects)
if got != want: fails.append(f"events by row: got {got}, want {want}")
# where, by hand: (row, kind, x, y, width)
hand = sorted([("main", "user", 100, 34, 50), ("main", "user", 770, 34, 30),
               ("main", "forward", 160, 52, 100), ("main", "forward", 270, 52, 150),
               ("main", "backward", 430, 52, 75), ("main", "backward", 515, 52, 250),
               ("main", "worker", 165, 70, 90),
               ("omp worker 1", "worker", 170, 96, 80), ("omp worker 1", "worker", 520, 96, 200)])
drawn = sorted(tuple(r[:5]) for r in p.rects)
if drawn != hand: fails.append(f"rectangles: got {drawn}, want {hand}")
# the titles: the numbers a hover shows, names unescaped
t = {r[5].split("\n")[0] + "/" + r[1]: r[5] for r in p.rects}
if "node %0 · layer 0\n0.200 ms\n5 GFLOP/s\nflops 2000000" not in t.get("conv2d+relu/forward", ""):
    fails.append(f"the first node's title: {t.get('conv2d+relu/forward')!r}")
if 'layer fc<1>&"x"' not in t.get("linear backward/backward", ""): fails.append("a layer's name not escaped back")
# the arena: 0 to 4 MiB on 70 px from y=214 up; 2, 3, 4, 1 MiB after 320, 640, 810, 1330 µs, held to the end
if p.arena != "M260.00,179.00 H420.00 V161.50 H505.00 V144.00 H765.00 V196.50 H800.00":
    fails.append(f"the arena's line: {p.arena}")
# the slowest nodes, both ways: %0 (0.2 + 0.5 ms of 1.4) before %1, whose forward alone is longer (0.3 + 0.15 ms)
rows = [[c for c in r if c.strip()] for r in p.rows]
if rows != [["%0", "%0", "conv2d+relu", "0", "0.200", "0.500", "50.0%"],
            ["%1", "%1", "linear", 'fc<1>&"x"', "0.300", "0.150", "32.1%"]]:
    fails.append(f"the slowest nodes: {rows}")
text = " ".join(" ".join(p.text).split())
if "report_sample_trace.json (beside this page) in ui.perfetto.dev or chrome://tracing" not in text:
    fails.append("no pointer to the full trace")
if fails:
    print("report_tool: timeline FAIL\n  " + "\n  ".join(fails))
    sys.exit(1)
print(f"report_tool: timeline ok: {len(p.rects)} events where they belong, the arena, the slowest nodes")
PY

# a trace that cannot be used is named in a note, and the page is still written
printf '{"traceEvents":[{"ph":"X","ts":1' >"$out/cut.json"
echo '{"displayTimeUnit":"ms"}' >"$out/none.json"
echo '{"traceEvents":[{"ph":"C","name":"arena","ts":0,"args":{"bytes":1}}]}' >"$out/empty.json"
for t in "absent.json:could not be read" "cut.json:is not JSON" "none.json:has no traceEvents" \
         "empty.json:holds no complete"; do
  f=$out/${t%%:*}
  rm -f "$out/n.html"
  "$bin" --trace "$f" "$src/report_sample.jsonl" "$out/n.html" >/dev/null || { echo "report_tool: $f refused"; exit 1; }
  grep -qF "class=\"note tl-note\">No timeline: $f ${t#*:}" "$out/n.html" || {
    echo "report_tool: no note naming $f (${t#*:})"
    exit 1
  }
  if grep -q 'class="tl-event"' "$out/n.html"; then echo "report_tool: events drawn from $f"; exit 1; fi
done
echo "report_tool: broken traces ok"

# refused: not a run log, and no file
echo '{"type":"other"}' >"$out/bad.jsonl"
if "$bin" "$out/bad.jsonl" "$out/bad.html" 2>"$out/err"; then
  echo "report_tool: a log of no run was accepted"
  exit 1
fi
grep -q "holds no run or step record" "$out/err" || { cat "$out/err"; exit 1; }
if "$bin" "$out/none.jsonl" "$out/bad.html" 2>"$out/err"; then
  echo "report_tool: a missing log was accepted"
  exit 1
fi
grep -q "cannot read the run log" "$out/err" || { cat "$out/err"; exit 1; }
echo "report_tool: refusals ok"
