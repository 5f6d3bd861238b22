"""The built site in a real headless browser (Debian's chromium driven by Playwright).

The site in `_build/html` (run `make book` first; `make test` does) is served on 127.0.0.1 and every
request to any other host is aborted, so a page that needs the network fails here as it would
offline. Every page of the table of contents must load without console errors, render its math with
MathJax (served from the site itself), load every image, show the glued numbers, and each notebook
page must link to Colab for that notebook on branch main.
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
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GLUE_ROLE = re.compile(r"\{glue:text\}`([^`]+)`")

pytestmark = pytest.mark.browser


def _toc_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    return files


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

    _check_glued_text(_glue_roles(page), tab.locator("span.pasted-text").all_inner_texts())

    if page.startswith("notebooks/"):
        colab = tab.locator("a[href*='colab.research.google.com']")
        assert colab.count() >= 1, "no Colab launch link"
        href = colab.first.get_attribute("href")
        assert href.endswith(f"/blob/main/{page}.ipynb"), href

    assert not errors, f"console errors on {page}: {errors}"
    context.close()
