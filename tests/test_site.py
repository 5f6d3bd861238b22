"""The built site in a real headless browser (Debian's chromium driven by Playwright).

The site in `_build/html` (run `make book` first; `make test` does) is served on 127.0.0.1 and every
request to any other host is aborted, so a page that needs the network fails here as it would
offline. Every page of the table of contents must load without console errors, render its math with
MathJax (served from the site itself), load every image, show the glued numbers, and each notebook
page must link to Colab for that notebook on branch main.

Accessibility: every content image must carry alternative text that says something (not empty,
not a file name), and axe-core (pinned in the Makefile, loaded from the local copy in `_axe/`, never
from a CDN) must find no violation of impact "serious" or "critical" on any page, in light and in
dark mode. Scrollable code and output blocks must be reachable with Tab.
"""

import functools
import http.server
import json
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
AXE_JS = ROOT / "_axe" / "axe-core" / "axe.min.js"
MODES = ("light", "dark")
# Content images: the article body, not the theme's logo or icons.
CONTENT_IMAGES = "article.bd-article img"
FILE_NAME = re.compile(r"(^|[/\\])[\w.-]*\.(png|jpe?g|gif|svg|webp)$|^[0-9a-f]{16,}", re.IGNORECASE)

# Each entry: (rule id, CSS selector the violation must be confined to, why it cannot be fixed here).
# A violation of an ignored rule anywhere else still fails.
AXE_IGNORED = []
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GLUE_ROLE = re.compile(r"\{glue:text\}`([^`]+)`")

pytestmark = pytest.mark.browser


def _toc_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    return files


def missing_alt_text(tab, selector=CONTENT_IMAGES):
    """The content images whose alt text is absent, empty, or only a file name, as (src, alt)."""
    images = tab.evaluate(
        """selector => Array.from(document.querySelectorAll(selector)).map(
               img => [img.getAttribute("src") || "", img.getAttribute("alt")])""",
        selector,
    )
    bad = []
    for src, alt in images:
        text = (alt or "").strip()
        name = src.rsplit("/", 1)[-1]
        if not text or FILE_NAME.search(text) or text == name or text == name.rsplit(".", 1)[0]:
            bad.append((src, alt))
    return bad


def set_mode(tab, mode):
    """Switch the pydata/sphinx-book theme to light or dark, as its theme button does."""
    tab.evaluate(
        """mode => { document.documentElement.dataset.mode = mode;
                     document.documentElement.dataset.theme = mode;
                     localStorage.setItem("mode", mode); localStorage.setItem("theme", mode); }""",
        mode,
    )
    # Colours change with CSS transitions: measure contrast only once every animation has finished.
    tab.evaluate("async () => { await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));"
                 " await Promise.all(document.getAnimations().map(a => a.finished.catch(() => null))); }")


def axe_violations(tab, ignored=AXE_IGNORED):
    """axe-core's serious and critical violations on the page, less the narrowly ignored ones."""
    if not AXE_JS.exists():
        pytest.fail("axe-core not found in _axe/: run `make axe` (make test does)")
    if not tab.evaluate("() => typeof window.axe !== 'undefined'"):
        tab.add_script_tag(path=str(AXE_JS))
    results = tab.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    found = []
    for violation in results:
        if violation["impact"] not in ("serious", "critical"):
            continue
        nodes = []
        for node in violation["nodes"]:
            target = " ".join(map(str, node["target"]))
            skip = any(
                rule == violation["id"] and tab.evaluate(
                    "([t, s]) => { const e = document.querySelector(t); return !!(e && e.closest(s)); }",
                    [node["target"][0], scope],
                )
                for rule, scope, _reason in ignored
            )
            if not skip:
                nodes.append(target)
        if nodes:
            found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {nodes[:5]}")
    return found


def scroll_blocks(tab):
    """Code and output blocks that scroll: (how many, those that Tab cannot reach or that lack a name)."""
    return tab.evaluate(
        """() => {
            const blocks = Array.from(document.querySelectorAll(
                "article.bd-article pre, article.bd-article div.output, article.bd-article div.cell_output, article.bd-article div.highlight"))
              .filter(e => {
                  const style = getComputedStyle(e);
                  const clips = !(style.overflowX === "visible" && style.overflowY === "visible");
                  return clips && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1);
              });
            const bad = blocks.filter(e => {
                const stop = e.tabIndex >= 0 ? e : e.closest("[tabindex='0']");
                return !(stop && (stop.getAttribute("aria-label") || stop.getAttribute("aria-labelledby")));
            });
            return [blocks.length, bad.map(e => e.className || e.tagName)];
        }"""
    )


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail("no built site in _build/html: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not found: install Debian's `chromium` package (see .ci/run)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


def _only_loopback(route):
    if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def _glue_roles(page):
    """The `{glue:text}` roles in a notebook page's markdown, as (key, format spec) pairs."""
    source = ROOT / f"{page}.ipynb"
    if not source.exists():
        return []
    cells = json.loads(source.read_text())["cells"]
    markdown = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    roles = []
    for role in GLUE_ROLE.findall(markdown):
        key, _, spec = role.rpartition(":")
        roles.append((key, spec) if key else (spec, ""))
    return roles


def _check_glued_text(roles, shown):
    assert len(shown) == len(roles), f"{len(roles)} glue roles but {len(shown)} pasted values"
    for (key, spec), text in zip(roles, shown):
        assert text.strip(), f"glue key {key!r} rendered empty"
        if spec and spec[-1] in "efg%":
            float(text.replace("%", ""))  # a numeric format must render a number


@pytest.mark.parametrize("page", _toc_pages())
def test_page(page, server, browser):
    context = browser.new_context()
    context.route("**/*", _only_loopback)
    tab = context.new_page()
    errors = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))

    response = tab.goto(f"{server}/{page}.html", wait_until="load")
    assert response is not None and response.ok, f"{page}.html did not load"

    if tab.locator(".math").count():
        tab.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        tab.evaluate("() => MathJax.startup.promise")
        assert tab.locator("mjx-container").count() > 0, "math present but not rendered"
        assert tab.locator("mjx-merror").count() == 0, "MathJax reported an error"

    # Lazy images load when scrolled into view; decode() waits until each one has loaded.
    sizes = tab.evaluate(
        """async () => {
            const images = Array.from(document.images);
            for (const img of images) { img.loading = "eager"; try { await img.decode(); } catch (e) {} }
            return images.map(img => [img.src, img.naturalWidth, img.naturalHeight]);
        }"""
    )
    broken = [src for src, w, h in sizes if not (w > 0 and h > 0)]
    assert not broken, f"images that did not load: {broken}"

    # text_contents, not inner_texts: values inside a collapsed solution are in the page, hidden.
    _check_glued_text(_glue_roles(page), tab.locator("span.pasted-text").all_text_contents())

    if page.startswith("notebooks/"):
        colab = tab.locator("a[href*='colab.research.google.com']")
        assert colab.count() >= 1, "no Colab launch link"
        href = colab.first.get_attribute("href")
        assert href.endswith(f"/blob/main/{page}.ipynb"), href

    assert not errors, f"console errors on {page}: {errors}"

    _, unreachable = scroll_blocks(tab)
    assert not unreachable, f"scrollable blocks that Tab cannot reach: {unreachable}"
    for mode in MODES:
        set_mode(tab, mode)
        violations = axe_violations(tab)
        assert not violations, f"axe on {page} ({mode} mode):\n" + "\n".join(violations)

    # Figures' alternative text is written in the chapters; this assertion needs every figure to have it.
    assert not missing_alt_text(tab), f"content images without meaningful alt text on {page}: {missing_alt_text(tab)}"
    context.close()


def test_scrollable_blocks_take_focus_on_a_narrow_screen(server, browser):
    """On a phone-sized screen code cells scroll sideways: each gets a named Tab stop."""
    pages = [p for p in _toc_pages() if p.startswith("notebooks/")]
    context = browser.new_context(viewport={"width": 360, "height": 740})
    context.route("**/*", _only_loopback)
    tab = context.new_page()
    with_blocks = []
    for page in pages:
        tab.goto(f"{server}/{page}.html", wait_until="load")
        count, unreachable = scroll_blocks(tab)
        assert not unreachable, f"{page}: scrollable blocks that Tab cannot reach: {unreachable}"
        if count:
            with_blocks.append(page)
    assert with_blocks, "no scrollable block found on a narrow screen: the check would test nothing"
    # Such a block takes keyboard focus.
    tab.goto(f"{server}/{with_blocks[0]}.html", wait_until="load")
    stop = tab.locator("article.bd-article [tabindex='0'][role='region']").first
    stop.focus()
    assert tab.evaluate("() => document.activeElement.getAttribute('role')") == "region"
    context.close()


ALT_FIXTURE = """<html lang="en"><body><article class="bd-article">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="{alt}">
</article></body></html>"""


@pytest.mark.parametrize(
    "alt, ok",
    [
        ("Two CDFs that cross near x = 0: the KDE's is smoother than the empirical step function.", True),
        ("", False),
        ("   ", False),
        ("../_images/0f3a9c2b1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a.png", False),
        ("fig_kde.png", False),
        ("0f3a9c2b1d4e5f6a7b8c9d0e1f2a3b4c", False),
    ],
)
def test_alt_text_check(browser, alt, ok):
    """The alt-text check above flags empty and file-name alt text and accepts a description."""
    tab = browser.new_page()
    tab.set_content(ALT_FIXTURE.format(alt=alt))
    assert (missing_alt_text(tab) == []) is ok
    tab.set_content(ALT_FIXTURE.replace(' alt="{alt}"', ""))
    assert missing_alt_text(tab), "an image without an alt attribute must be flagged"
    tab.close()


def test_axe_check_reports_a_serious_violation(browser):
    """axe is loaded from the local copy and its serious findings fail the page."""
    tab = browser.new_page()
    tab.set_content('<html lang="en"><head><title>t</title></head><body><main>'
                    '<p style="color:#777;background:#888">low contrast text</p>'
                    '<ul><li>fine</li></ul><div role="list"><span>not a listitem</span></div></main></body></html>')
    found = " ".join(axe_violations(tab, ignored=[]))
    assert "color-contrast" in found and "aria-required-children" in found, found
    tab.close()


FIGURE_CODE = """\
import matplotlib.pyplot as plt
from myst_nb import glue
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([0, 1], [0, 1])
glue("described", fig, display=False)
glue("undescribed", fig, display=False)
plt.close(fig)
"""
DESCRIPTION = "A straight line rising from the lower left to the upper right corner."
FIGURE_MARKDOWN = f"""# Figures

```{{glue:figure}} described
:alt: {DESCRIPTION}

A line.
```

```{{glue:figure}} undescribed

The same line, without alternative text.
```
"""


@pytest.mark.book
def test_alt_text_check_on_a_built_book(tmp_path, browser):
    """On a real build (the project's configuration, myst-nb's figure output) the check flags the
    glued figure without `:alt:` and accepts the one with it."""
    import subprocess
    import sys

    import nbformat

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    for key in ("html_extra_path", "mathjax_path"):
        config["sphinx"]["config"].pop(key, None)
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: figures\n")
    (tmp_path / "intro.md").write_text("# Probe book\n")
    shutil.copy(ROOT / "references.bib", tmp_path)
    shutil.copytree(ROOT / "_ext", tmp_path / "_ext")
    shutil.copytree(ROOT / "_static", tmp_path / "_static")
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(FIGURE_CODE), nbformat.v4.new_markdown_cell(FIGURE_MARKDOWN)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(notebook, tmp_path / "figures.ipynb")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book), "build", str(tmp_path), "-W", "-n", "--keep-going", "--all"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]

    html = tmp_path / "_build" / "html"
    handler = functools.partial(_QuietHandler, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        tab = browser.new_page()
        tab.route("**/*", _only_loopback)
        tab.goto(f"http://127.0.0.1:{httpd.server_address[1]}/figures.html", wait_until="load")
        alts = tab.evaluate(f"() => Array.from(document.querySelectorAll({CONTENT_IMAGES!r})).map(i => i.alt)")
        bad = missing_alt_text(tab)
        tab.close()
    finally:
        httpd.shutdown()
    assert len(alts) == 2 and DESCRIPTION in alts, alts
    assert len(bad) == 1 and bad[0][1] != DESCRIPTION, bad
