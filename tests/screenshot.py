"""Check every page of the built site in Debian's chromium (selenium + chromedriver), with screenshots.

    python tests/screenshot.py                 # build, serve on 127.0.0.1, check every page, write PNGs
    python tests/screenshot.py --out shots     # where the screenshots go (default: a temp folder)

Every built HTML page is loaded at 1280 px and at 390 px wide, in Material's light scheme
("default") and in its dark one ("slate"), as the reader's system asks for it
(prefers-color-scheme). A page fails on:

- a code block or a table wider than its box at 1280 px (the reader would have to scroll it
  sideways), or anything that makes the page itself scroll sideways, at either width;
- a mermaid diagram that did not draw, or an arrow (its line or its head) whose contrast against
  the background is under 3:1, WCAG's minimum for graphics;
- a copy button covered by a code annotation's marker, or code in a table cell broken inside a
  word ("summary.tx" above "t");
- a request to any host but 127.0.0.1 (web fonts, CDNs: the site must work offline);
- a broken image;
- an error in the browser's console.

Material draws each mermaid diagram inside a closed shadow root, which no script can look into.
For this check only, the browser runs a small script (PROBE) before each page's own scripts: it
makes those shadow roots open. The site itself is not changed. Collapsed blocks (<details>) and
every tab are opened before the widths are measured. tests/test_browser.py runs this check in the
slow tier; exit code 0 here when every page passes.
"""

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
WIDTHS = (1280, 390)  # a laptop, and a phone (an iPhone 12 to 15 is 390 CSS px wide)
HEIGHTS = {1280: 900, 390: 844}
SCHEMES = {"default": "light", "slate": "dark"}  # Material's scheme -> the prefers-color-scheme that picks it
SHOTS = {"lesson-02": "lessons/02-select-chat/", "home": ""}  # name -> page: screenshots in every width and scheme
MIN_CONTRAST = 3.0  # WCAG 2.1, 1.4.11 non-text contrast: 3:1 for the parts of a graphic you need to see
LOCAL = "127.0.0.1"
PROBE = """
(() => {
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: "open"}); };
})();
"""
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox",  # no sandbox: CI runs as root
    "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--mute-audio", "--lang=en-GB",
    # Nothing may leave the machine: every name but 127.0.0.1 fails to resolve. Such a request still
    # shows in the network log, which is what the check reads.
    f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOCAL}",
]

# True once the page, its images, its fonts and its diagrams are done. arguments[0]: how many diagrams
# the page's HTML holds. Material replaces each <pre class="mermaid"> with a <div class="mermaid"> whose
# shadow root holds the drawing.
READY = """
const want = arguments[0];
const drawn = [...document.querySelectorAll("div.mermaid")]
  .filter(d => d.shadowRoot && d.shadowRoot.querySelector("svg"));
return document.readyState === "complete" && document.fonts.status === "loaded"
  && [...document.images].every(image => image.complete) && drawn.length >= want;
"""

# Measures the loaded page. arguments[0]: the minimum contrast. Returns a dict (see Browser.check).
MEASURE = """
const minContrast = arguments[0];
const facts = {scheme: document.body.getAttribute("data-md-color-scheme"), boxes: [], arrows: [],
               covered: [], broken: [], images: [], diagrams: 0, syntaxErrors: 0, rawDiagrams: 0, pageOverflow: 0};

// Any CSS colour -> [r, g, b, alpha], through a canvas, so every colour syntax is understood.
const pen = Object.assign(document.createElement("canvas"), {width: 1, height: 1})
  .getContext("2d", {willReadFrequently: true});
function rgba(colour) {
  pen.clearRect(0, 0, 1, 1);
  pen.fillStyle = "rgba(0, 0, 0, 0)";
  pen.fillStyle = colour;
  pen.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = pen.getImageData(0, 0, 1, 1).data;
  return [r, g, b, a / 255];
}
function over([r, g, b, a], [R, G, B]) {  // colour with alpha, painted over an opaque one
  return [r * a + R * (1 - a), g * a + G * (1 - a), b * a + B * (1 - a)];
}
function luminance(rgb) {
  const [r, g, b] = rgb.map(c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
function parentOf(node) {  // up the tree, and out of a shadow root to its host
  return node.parentElement || (node.parentNode && node.parentNode.host) || null;
}
function background(node) {  // the opaque colour behind node: its ancestors' backgrounds, stacked
  const layers = [];
  for (let n = node; n; n = parentOf(n)) {
    const colour = rgba(getComputedStyle(n).backgroundColor);
    if (colour[3] > 0) layers.push(colour);
    if (colour[3] >= 1) break;
  }
  let behind = rgba(getComputedStyle(document.documentElement).colorScheme === "dark" ? "#121212" : "#fff");
  for (const layer of layers.reverse()) behind = over(layer, behind);
  return behind.slice(0, 3);
}
function paint(shape, what, bg) {  // the colour a shape's fill or stroke shows, or null if it shows none
  const style = getComputedStyle(shape);
  const value = style[what];
  if (!value || value === "none" || value.startsWith("url(")) return null;
  if (what === "stroke" && parseFloat(style.strokeWidth) === 0) return null;
  const [r, g, b, a] = rgba(value);
  const alpha = a * parseFloat(style.opacity) * parseFloat(style[what + "Opacity"]);
  return alpha > 0 ? over([r, g, b, alpha], bg) : null;
}
function shown(paints, bg) {  // the best contrast of the paints that show
  const seen = paints.filter(p => p);
  return seen.length ? Math.max(...seen.map(p => contrast(p, bg))) : 1;
}
const fmt = rgb => `rgb(${rgb.map(Math.round).join(", ")})`;
const column = document.querySelector(".md-content__inner") || document.body;
const headings = [...column.querySelectorAll("h1, h2, h3, h4")];
function section(node) {  // the heading a node sits under
  let last = null;
  for (const h of headings) if (h.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING) last = h;
  return last ? last.textContent.replace(/\\s*¶$/, "").trim() : "(top of page)";
}

// Diagrams: drawn? arrows visible?
for (const host of document.querySelectorAll("div.mermaid")) {
  const svg = host.shadowRoot && host.shadowRoot.querySelector("svg");
  if (!svg) continue;
  if (/Syntax error/i.test(svg.textContent)) { facts.syntaxErrors++; continue; }
  const number = ++facts.diagrams;
  const bg = background(svg);
  const markers = new Map();
  let lines = 0, faint = 0, worst = Infinity, worstPaint = null;
  for (const shape of svg.querySelectorAll("path, line, polyline")) {
    if (shape.closest("marker")) continue;
    const style = getComputedStyle(shape);
    const ends = [style.markerStart, style.markerEnd].filter(m => m && m !== "none");
    if (!ends.length) continue;
    lines++;
    for (const end of ends) {
      const id = (end.match(/#([^"')]+)/) || [])[1];
      const marker = id && [...svg.querySelectorAll("marker")].find(m => m.id === id);
      if (marker) markers.set(id, marker);
    }
    const stroke = paint(shape, "stroke", bg);
    const value = shown([stroke], bg);
    if (value < minContrast) { faint++; if (value < worst) { worst = value; worstPaint = stroke; } }
  }
  if (faint) facts.arrows.push(`diagram ${number} (${section(host)}): ${faint} of ${lines} arrow lines `
    + `have a contrast of ${worst.toFixed(2)}:1 or less against the background `
    + `(${worstPaint ? fmt(worstPaint) : "no stroke"} on ${fmt(bg)})`);
  for (const [id, marker] of markers) {
    const shapes = [...marker.querySelectorAll("path, polygon, circle, rect, line, polyline")];
    const paints = shapes.flatMap(s => [paint(s, "fill", bg), paint(s, "stroke", bg)]);
    const value = shown(paints, bg);
    if (value < minContrast) facts.arrows.push(`diagram ${number} (${section(host)}): arrowhead "${id}" has a `
      + `contrast of ${value.toFixed(2)}:1 against the background (${paints.filter(p => p).map(fmt).join(", ")
      || "no paint"} on ${fmt(bg)})`);
  }
}
facts.rawDiagrams = document.querySelectorAll("pre.mermaid").length;

// Copy buttons over an annotation's marker. The button stays put while the code scrolls sideways
// under it, so a marker on a line beside the button is covered if it is under it now, or further
// right, where scrolling brings it under.
for (const button of column.querySelectorAll(".md-code__button, .md-clipboard")) {
  const b = button.getBoundingClientRect();
  const block = button.closest(".highlight, pre") || button.parentElement;
  for (const marker of block.querySelectorAll(".md-annotation__index")) {
    const m = marker.getBoundingClientRect();
    if (b.width && m.width && m.right > b.left && m.top < b.bottom && b.top < m.bottom)
      facts.covered.push(`the copy button of the code block under "${section(block)}" is covered by `
        + `annotation marker (${(marker.querySelector("[data-md-annotation-id]") || marker).dataset.mdAnnotationId})`);
  }
}

// Code in a table cell broken inside a word ("summary.tx" above "t"): between two letters, digits or
// underscores. A break at a space, a hyphen or a bracket is fine.
function badBreak(code) {  // the text up to a line break inside a word, or null
  const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  let before = "", top = null;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getBoundingClientRect();
      if (top !== null && rect.height && rect.top > top + rect.height / 2
          && /\\w$/.test(before) && /\\w/.test(node.data[i])) return before;
      if (rect.height) top = rect.top;
      before += node.data[i];
    }
  }
  return null;
}
for (const code of column.querySelectorAll("td code, th code")) {
  const at = code.getClientRects().length > 1 && badBreak(code);
  if (at) facts.broken.push(`\\`${code.textContent}\\` in a table under "${section(code)}" breaks inside `
    + `a word, after "${at}"`);
}

// Images that did not load.
for (const image of document.images)
  if (!image.complete || image.naturalWidth === 0) facts.images.push(image.currentSrc || image.src);

// Widths: open what a reader can open first, so that a collapsed diff or a hidden tab is measured too.
document.querySelectorAll("details").forEach(d => { d.open = true; });
const reveal = document.createElement("style");
reveal.textContent = ".tabbed-set > .tabbed-content > .tabbed-block { display: block !important; }";
document.head.append(reveal);
// Material lets a table's scroll box reach into the column's margin, to the edge of .md-content.
const right = (document.querySelector(".md-content") || column).getBoundingClientRect().right;
const boxes = new Map();  // block -> how far its content sticks out, in px
const measured = "pre, pre > code, .highlight, table, .md-typeset__scrollwrap, .md-typeset__table";
for (const node of column.querySelectorAll(measured)) {
  if (!node.getClientRects().length) continue;  // not shown
  const scrolls = getComputedStyle(node).overflowX !== "visible";
  const wider = scrolls ? node.scrollWidth - node.clientWidth : 0;
  const out = node.getBoundingClientRect().right - right;
  const by = Math.max(wider, out);
  if (by <= 1) continue;
  const block = node.closest(".md-typeset__scrollwrap") || node.closest(".highlight") || node.closest("table") || node;
  boxes.set(block, Math.max(boxes.get(block) || 0, by));
}
for (const [block, by] of boxes) {
  const code = [...block.querySelectorAll("pre > code, td.code code")];
  const text = code.map(c => c.textContent).join("\\n");
  if (code.length) {
    const longest = text.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), "");
    const title = block.querySelector(".filename");
    facts.boxes.push(`code block under "${section(block)}"${title ? ` (${title.textContent.trim()})` : ""} `
      + `is ${Math.round(by)} px wider than its box; its longest line has ${longest.length} characters: `
      + JSON.stringify(longest.slice(0, 60) + (longest.length > 60 ? "..." : "")));
  } else {
    const head = [...block.querySelectorAll("th")].map(th => th.textContent.trim()).join(" | ");
    facts.boxes.push(`table under "${section(block)}" (${head.slice(0, 60) || "no header"}) is `
      + `${Math.round(by)} px wider than its box`);
  }
}
reveal.remove();
facts.pageOverflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
return facts;
"""


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromedriver():
    return shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None)


def build_site(folder):
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(folder)],
                   cwd=REPO, check=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def pages(site):
    """Every built HTML page, as its path in the site ("" for the home page), sorted."""
    paths = []
    for file in sorted(Path(site).rglob("*.html")):
        path = file.relative_to(site).as_posix()
        paths.append(path.removesuffix("index.html"))
    return paths


def diagrams_in(site, path):
    """How many mermaid diagrams the page's HTML holds (before mermaid draws them)."""
    file = Path(site) / (path + "index.html" if path == "" or path.endswith("/") else path)
    return len(re.findall(r'<pre class="mermaid"', file.read_text(encoding="utf-8")))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(site):
    """Serve the folder `site` on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(site))
    with http.server.ThreadingHTTPServer((LOCAL, 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://{LOCAL}:{httpd.server_address[1]}/"
        finally:
            httpd.shutdown()
            thread.join()


@dataclass(frozen=True)
class Problem:
    page: str
    width: int
    scheme: str
    what: str

    def __str__(self):
        return f"/{self.page} at {self.width} px, {self.scheme}: {self.what}"


class Browser:
    """One headless chromium, driven by chromedriver, reused for every page."""

    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium()
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        self.driver = webdriver.Chrome(options=options, service=Service(chromedriver()))
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE})
        self.emulated = None
        self.last = None  # (page, width, scheme) checked last

    def close(self):
        self.driver.quit()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def emulate(self, width, scheme):
        self.emulated = (width, scheme)
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": HEIGHTS.get(width, 900), "deviceScaleFactor": 1, "mobile": width < 600})
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": SCHEMES[scheme]}]})

    def drain(self):
        """The requests and console errors logged since the last call: (urls, errors)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                urls.append(message["params"]["url"])
        errors = [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]
        return urls, errors

    def check(self, base, page, width, scheme, diagrams, shots=None, name=None):
        """Load one page at `width` px in `scheme` and check it; returns a list of Problems.

        `diagrams`: how many mermaid diagrams the page holds. With `shots` (a folder) and `name`, it also
        saves the top of the page and its first diagram as PNGs there.
        """
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        late = self.late()
        if self.emulated != (width, scheme):
            self.driver.get("about:blank")  # a page of the site would answer a change of scheme by saving it
            self.emulate(width, scheme)
        self.driver.get(base + page)
        try:  # polls a condition, up to 15 s: a diagram that never draws is reported below
            WebDriverWait(self.driver, 15, poll_frequency=0.05).until(
                lambda driver: driver.execute_script(READY, diagrams))
        except TimeoutException:
            pass
        if shots and name:
            self.screenshots(Path(shots), f"{name}-{width}-{scheme}")
        facts = self.driver.execute_script(MEASURE, MIN_CONTRAST)
        found = []
        if facts["scheme"] != scheme:
            found.append(f"the page came up in scheme {facts['scheme']!r}, not {scheme!r}")
        if facts["diagrams"] < diagrams or facts["syntaxErrors"] or facts["rawDiagrams"]:
            found.append(f"{facts['diagrams']} of {diagrams} mermaid diagrams drew"
                         + (f"; {facts['syntaxErrors']} showed a syntax error" if facts["syntaxErrors"] else "")
                         + (f"; {facts['rawDiagrams']} still show their source" if facts["rawDiagrams"] else ""))
        found += facts["arrows"] + facts["covered"] + facts["broken"]
        found += [f"broken image: {src}" for src in facts["images"]]
        if width >= 1280:
            found += facts["boxes"]
        if facts["pageOverflow"] > 0:
            found.append(f"the page scrolls sideways by {facts['pageOverflow']} px")
        found += logged(*self.drain())
        self.driver.execute_script("localStorage.clear(); sessionStorage.clear();")  # no palette carried over
        self.last = (page, width, scheme)
        return late + [Problem(page, width, scheme, what) for what in found]

    def late(self):
        """What the page checked last logged after its check (a request, a console error): its Problems."""
        found = logged(*self.drain())
        return [Problem(*self.last, f"{what} (after its check)") for what in found] if self.last else []

    def screenshots(self, folder, stem):
        folder.mkdir(parents=True, exist_ok=True)
        self.driver.execute_script("""  // no half-finished fades in the pictures
            const still = document.createElement("style");
            still.textContent = "*, *::before, *::after { transition: none !important; animation: none !important; }";
            document.head.append(still);""")
        self.driver.save_screenshot(str(folder / f"{stem}-top.png"))
        if self.driver.execute_script("""
            const d = document.querySelector("div.mermaid");
            if (d) d.scrollIntoView({block: "center"});
            return !!d;"""):
            self.driver.save_screenshot(str(folder / f"{stem}-diagram.png"))
            self.driver.execute_script("window.scrollTo(0, 0)")


def local(url):
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname == LOCAL


def logged(urls, errors):
    """The problems in what the browser logged: requests beyond 127.0.0.1, console errors."""
    return ([f"request leaves {LOCAL}: {url}" for url in urls if not local(url)]
            + [f"console error: {error}" for error in errors])


def check_site(site, browser, shots=None, widths=WIDTHS, schemes=tuple(SCHEMES), only=None):
    """Check every page of the built site in `site` (or the pages in `only`) in every width and scheme.

    Screenshots of the SHOTS pages go to `shots` if given. Returns (problems, pages checked).
    """
    names = {path: name for name, path in SHOTS.items()}
    checked = list(only) if only is not None else pages(site)
    problems = []
    with serve(site) as base:
        for scheme in schemes:
            for width in widths:
                for page in checked:
                    problems += browser.check(base, page, width, scheme, diagrams_in(site, page),
                                              shots, names.get(page))
        problems += browser.late()
    return problems, checked


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where the screenshots go (default: a temp folder)")
    args = parser.parse_args()
    if not chromium() or not chromedriver():
        sys.exit("error: chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    out = args.out or Path(tempfile.mkdtemp(prefix="chat-kit-shots-"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work, Browser() as browser:
        site = Path(work) / "site"
        build_site(site)
        problems, checked = check_site(site, browser, out)
    print(f"{len(checked)} pages x {len(WIDTHS)} widths x {len(SCHEMES)} schemes checked "
          f"in {time.monotonic() - started:.0f} s; screenshots in {out}")
    for problem in problems:
        print(f"problem: {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
