"""Render the built site in headless Chromium: screenshots, and a check that every diagram draws.

    python tests/screenshot.py                 # build, serve on 127.0.0.1, check, write PNGs
    python tests/screenshot.py --out shots     # where the screenshots go (default: a temp folder)

Material draws each mermaid diagram inside a closed shadow root, which a DOM dump
cannot see into. For this check only, the local server adds a small script to every
page: it opens those shadow roots and marks each diagram data-rendered="svg" once
mermaid has drawn it, or "error" if mermaid showed a syntax error. The site itself
is not changed. Exit code 0 when every diagram on every page drew.
"""

import argparse
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = {  # screenshot name -> path in the site
    "home": "",
    "lesson-01": "lessons/01-blocking-echo/",
    "lesson-02": "lessons/02-select-chat/",
    "lesson-03": "lessons/03-json-protocol/",
    "lesson-04": "lessons/04-threads/",
    "lesson-05": "lessons/05-complete-chat/",
}
PROBE = b"""<script>
(() => {
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) { return attach.call(this, {...init, mode: "open"}); };
  setInterval(() => document.querySelectorAll("div.mermaid").forEach(d => {
    const root = d.shadowRoot, svg = root && root.querySelector("svg");
    if (svg) d.dataset.rendered = /Syntax error/.test(svg.textContent) ? "error" : "svg";
  }), 50);
})();
</script>"""
CHROMIUM_FLAGS = [  # no sandbox as root; no background traffic: this machine has no network
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1280,1000", "--virtual-time-budget=8000",
]


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


class ProbingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built site, with the probe script added to every HTML page."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(b"<head>", b"<head>" + PROBE, 1)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return None


def build_site(folder):
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(folder)],
                   cwd=REPO, check=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def run_chromium(url, profile, *args):
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=90).stdout


def check_page(url, profile, png=None):
    """Check one page (and screenshot it to `png`); return (diagrams drawn, diagrams in all, problems)."""
    if png:
        run_chromium(url, profile, f"--screenshot={png}")
    dom = run_chromium(url, profile, "--dump-dom")
    total = len(re.findall(r'<div class="mermaid"', dom))
    drawn = len(re.findall(r'data-rendered="svg"', dom))
    problems = []
    if "<pre class=\"mermaid\"" in dom:
        problems.append("a diagram is still raw text: was mermaid loaded?")
    if 'data-rendered="error"' in dom:
        problems.append("mermaid reported a syntax error")
    if drawn < total:
        problems.append(f"only {drawn} of {total} diagrams drew")
    if png and not png.is_file():
        problems.append("no screenshot was written")
    return drawn, total, problems


def check_site(out=None):
    """Build, serve and check every page in PAGES, with screenshots in `out` if given.

    Returns {page: (drawn, total, problems)}.
    """
    if out:
        out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        site, profile = Path(work) / "site", Path(work) / "profile"
        build_site(site)
        handler = functools.partial(ProbingHandler, directory=str(site))
        with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            base = f"http://127.0.0.1:{httpd.server_address[1]}/"
            try:
                return {name: check_page(base + path, profile, out and out / f"{name}.png")
                        for name, path in PAGES.items()}
            finally:
                httpd.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="chat-kit-shots-")))
    args = parser.parse_args()
    if not chromium():
        sys.exit("error: chromium is not installed (Debian: apt-get install chromium)")
    failed = False
    for name, (drawn, total, problems) in check_site(args.out).items():
        print(f"{name:10} {drawn}/{total} diagrams drawn  {args.out / (name + '.png')}"
              + "".join(f"\n    problem: {problem}" for problem in problems))
        failed = failed or bool(problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
