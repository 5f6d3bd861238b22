"""Small Sphinx fixes for the book's HTML (loaded from _config.yml as a local extension)."""

import re

# docutils writes the bibliography as <div role="list"> whose entries carry role="doc-biblioentry",
# a role deprecated in DPUB-ARIA 1.1 that assistive technology (and axe-core's
# aria-required-children, a critical finding) does not accept as an item of a list.
_BIBLIOENTRY = re.compile(r'(<div class="citation"[^>]*?) role="doc-biblioentry"')


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    """Emit each inline script once.

    The theme and sphinx-thebe both register the same inline ``THEBE_JS_URL`` declaration; the
    second copy (registered once with filename None, once with "") is a ``const`` redeclaration
    that the browser reports as an error on every page.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (str(script.filename or ""), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


def _bibliography_list_items(app, pagename, templatename, context, doctree):
    """Give the entries of a citation list the role a list needs: listitem."""
    body = context.get("body")
    if body and 'role="doc-biblioentry"' in body:
        context["body"] = _BIBLIOENTRY.sub(r'\1 role="listitem"', body)


def setup(app):
    # html-page-context is emitted with emit_firstresult: a late handler may never run, so run early.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=1)
    app.connect("html-page-context", _bibliography_list_items, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
