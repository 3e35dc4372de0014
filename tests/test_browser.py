"""Every page of the site, checked in a real browser: Debian's chromium, driven by chromedriver.

    python -m pytest --slow -m slow tests/test_browser.py

tests/screenshot.py does the work (it says what fails a page); here the site is built once, every
page is checked at 1280 px and 390 px in both schemes, and planted defects prove that the check
finds what it is meant to find. Screenshots of a lesson and of the home page, in every width and
scheme, are kept in $KIT_ARTEFACTS/browser if that is set, else in a pytest temp folder; the test
prints where, and how long it took.
"""

import os
import re
import shutil
import time
from pathlib import Path

import markdown
import pytest
from mkdocs.config import load_config

import screenshot

pytestmark = [
    pytest.mark.slow,  # minutes of browser time: CI runs these in its second step
    pytest.mark.skipif(screenshot.chromium() is None or screenshot.chromedriver() is None,
                       reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser") / "site"
    screenshot.build_site(folder)
    return folder


@pytest.fixture(scope="module")
def browser():
    with screenshot.Browser() as one:  # one chromium for every page of every test here
        yield one


def artefacts(tmp_path_factory):
    root = os.environ.get("KIT_ARTEFACTS")
    if root:
        folder = Path(root) / "browser"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.mark.timeout(600)  # 36 pages (with the whole-file pages) x 2 loads: 1 to 3 minutes on 2 cores
@pytest.mark.parametrize("scheme", list(screenshot.SCHEMES))  # two halves, so two workers share them
def test_every_page_in_both_widths(site, browser, tmp_path_factory, scheme):
    shots = artefacts(tmp_path_factory)
    started = time.monotonic()
    problems, checked = screenshot.check_site(site, browser, shots, schemes=(scheme,))
    summary = (f"{len(checked)} pages x {len(screenshot.WIDTHS)} widths in the {scheme} scheme "
               f"checked in {time.monotonic() - started:.0f} s; screenshots in {shots}")
    print(summary)  # shown with -rP, and on a failure
    assert len(checked) >= 15 and "" in checked and "404.html" in checked, f"pages found: {checked}"
    for name in screenshot.SHOTS:
        for width in screenshot.WIDTHS:
            assert (shots / f"{name}-{width}-{scheme}-top.png").stat().st_size > 0
    assert not problems, f"{summary}\n{len(problems)} problems:\n" + "\n".join(map(str, problems))


# Planted pages: a built page's header, nav and styles, with the article's content replaced.

def plant(site, folder, like, content):
    """Copy the built page `like` (a folder in the site) to `folder`, its article holding only `content`."""
    page = (site / like / "index.html").read_text(encoding="utf-8")
    article = re.compile(r'(<article class="md-content__inner md-typeset">).*?(</article>)', re.DOTALL)
    assert article.search(page), f"{like}: no article to plant into"
    target = site / folder / "index.html"
    target.parent.mkdir(parents=True)
    target.write_text(article.sub(lambda match: match[1] + content + match[2], page, count=1), encoding="utf-8")
    return f"{folder}/"


@pytest.fixture
def planted(site, tmp_path):
    """A copy of the built site to plant pages into."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    return copy


def render(text):
    """Markdown to HTML as the site renders it: the site's own settings for code blocks and tables."""
    configs = load_config(str(screenshot.REPO / "mkdocs.yml"))["mdx_configs"]
    names = ["pymdownx.highlight", "pymdownx.superfences", "tables"]
    return markdown.markdown(text, extensions=names,
                             extension_configs={name: configs[name] for name in names if name in configs})


def matches(found, patterns):
    """Pair each pattern with the one found line it matches; returns (patterns unmatched, lines left over)."""
    left = list(found)
    unmatched = []
    for pattern in patterns:
        hit = next((line for line in left if re.fullmatch(pattern, line, re.DOTALL)), None)
        if hit is None:
            unmatched.append(pattern)
        else:
            left.remove(hit)
    return unmatched, left


def assert_found_exactly(problems, patterns, scheme=None):
    found = [problem.what for problem in problems if scheme is None or problem.scheme == scheme]
    unmatched, left = matches(found, patterns)
    assert not unmatched and not left, (f"not found: {unmatched}\nfound more than was planted: {left}\n"
                                        "all found:\n" + "\n".join(map(str, problems)))


def test_the_check_finds_a_planted_overflow_and_passes_88_columns(planted, browser):
    # Both pages are one level deep, as getting-started/ is, so the copied page's links still work.
    wide = plant(planted, "planted-wide", "getting-started", render(
        f"# Wide\n\n```\n{'w' * 120}\n```\n\n| planted |\n| --- |\n| {'t' * 240} |\n"))
    line = "x = 1  # " + "f" * 79  # 88 columns: what ruff lets the stages have
    fits = plant(planted, "planted-fits", "getting-started", render(
        f"# Fits\n\n```python\n{line}\n```\n\n"
        f'```python linenums="998"\n{line}\n{line}\n```\n\n'  # beside 3-digit line numbers
        f"```diff\n+{line}\n```\n\n"  # a diff line: 89
        "| planted | table |\n| --- | --- |\n| `summary.txt` | a narrow table |\n"))
    problems, _ = screenshot.check_site(planted, browser, widths=(1280,), only=[wide, fits])
    assert {problem.page for problem in problems} == {wide}, "\n".join(map(str, problems))
    for scheme in screenshot.SCHEMES:
        assert_found_exactly(problems, [
            r'code block under "Wide" is \d+ px wider than its box; its longest line has 120 characters: "w{60}\.\.\."',
            r'table under "Wide" \(planted\) is \d+ px wider than its box',
        ], scheme)


def test_the_check_finds_faint_arrows(planted, browser):
    diagram = '<h1 id="faint">Faint</h1><pre class="mermaid"><code>sequenceDiagram\n    A-&gt;&gt;B: hi\n</code></pre>'
    # The arrows take the colour of the page behind them: no contrast at all. (The site's fix for the
    # heads, in overrides/main.html, paints them with this same variable.)
    faint = plant(planted, "lessons/planted-faint", "lessons/01-blocking-echo",
                  "<style>:root, [data-md-color-scheme] { --md-mermaid-sequence-message-line-color: "
                  "var(--md-default-bg-color); }</style>" + diagram)
    plain = plant(planted, "lessons/planted-plain", "lessons/01-blocking-echo", diagram)
    problems, _ = screenshot.check_site(planted, browser, widths=(1280,), only=[faint, plain])
    assert {problem.page for problem in problems} == {faint}, "\n".join(map(str, problems))
    for scheme in screenshot.SCHEMES:
        assert_found_exactly(problems, [
            r"diagram 1 \(Faint\): 1 of 1 arrow lines have a contrast of 1\.00:1 or less .*",
            r'diagram 1 \(Faint\): arrowhead "__mermaid_0-arrowhead" has a contrast of 1\.00:1 .*',
        ], scheme)


def test_the_check_finds_requests_off_the_machine_and_what_breaks(planted, browser):
    """A web font, an image from a CDN, a missing image, a console error, a diagram mermaid cannot draw."""
    font = "https://fonts.example.invalid/planted.woff2"
    image = "https://cdn.example.invalid/planted.png"
    away = plant(planted, "planted-away", "getting-started",
                 '<h1 id="away">Away</h1>'
                 f"<style>@font-face {{ font-family: planted; src: url({font}); }}"
                 " .planted { font-family: planted; }</style>"
                 f'<p class="planted">text in a web font</p><img src="{image}" alt="planted">'
                 '<img src="missing.png" alt="planted"><script>console.error("planted error")</script>'
                 '<pre class="mermaid"><code>sequenceDiagram\n    A-&gt;&gt;&gt;: not mermaid\n</code></pre>')
    problems, _ = screenshot.check_site(planted, browser, widths=(1280,), schemes=("default",), only=[away])
    here = r"http://127\.0\.0\.1:\d+/planted-away/missing\.png"
    assert_found_exactly(problems, [
        f"request leaves 127\\.0\\.0\\.1: {re.escape(font)}",
        f"request leaves 127\\.0\\.0\\.1: {re.escape(image)}",
        f"broken image: {re.escape(image)}",
        f"broken image: {here}",
        f"console error: {re.escape(font)} - Failed to load resource: net::ERR_NAME_NOT_RESOLVED",
        f"console error: {re.escape(image)} - Failed to load resource: net::ERR_NAME_NOT_RESOLVED",
        f"console error: {here} - Failed to load resource: .* 404 .*",
        r'console error: .*"planted error"',
        "0 of 1 mermaid diagrams drew; 1 still show their source",  # after 15 s of waiting for it
        r"console error: .*/mermaid\.min\.js .*Parse error on line 2:.*",
    ])
