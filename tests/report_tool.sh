#!/usr/bin/env bash
# The report tool on the hand-written run log tests/report_sample.jsonl, no
# browser needed: the page parses as HTML with every element closed, each curve
# is there with as many points as the log has finite values, the findings come
# first (errors before warnings) with their remedies, the histograms and the
# graph's nodes are all drawn, a picture is embedded byte for byte and a missing
# one is named, nothing is fetched from elsewhere; a log that is not a run log
# and a missing one are refused with a message.
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
