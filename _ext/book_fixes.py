"""Small Sphinx fixes for the book's HTML (loaded from _config.yml as a local extension)."""


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


def setup(app):
    # html-page-context is emitted with emit_firstresult: a late handler may never run, so run early.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
