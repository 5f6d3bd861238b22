"""The book's API reference, generated from the package itself (loaded from _config.yml).

``api-reference`` (a directive taking a package name) writes, at build time:

- the package docstring and a summary table of every name in the package's ``__all__``;
- one section per public submodule named in ``__all__``: its docstring, a summary table of the
  submodule's ``__all__`` and the full autodoc entries of those names (numpy-style docstrings are
  read by napoleon). Members a class gets from outside the package (scikit-learn's
  ``get_params``, ``set_fit_request``, ...) are left out; those inherited from the package's own
  private bases (the shared mixture methods) are shown.

A name added to ``__all__``, or a new submodule, appears without editing the page. Each object is
documented once, where it is defined; a reference through a re-export (``kdelib.GaussianKDE``, as
the chapters write it) is resolved to that entry by a ``missing-reference`` handler, so both
spellings link.
"""

import hashlib
import importlib
import inspect
import re
import types

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.ext.autodoc import INSTANCEATTR, UNINITIALIZED_ATTR
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode, nested_parse_with_titles


def _import(dotted):
    """The object named by a dotted path (module, then attributes), or None."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def public_names(package):
    """(submodules, other names) of ``package.__all__``, each sorted."""
    module = importlib.import_module(package)
    names = sorted(getattr(module, "__all__", []))
    submodules = [n for n in names if isinstance(getattr(module, n), types.ModuleType)]
    return submodules, [n for n in names if n not in submodules]


def _summary(qualified_names):
    return ["", ".. autosummary::", "", *(f"   {name}" for name in qualified_names), ""]


def _directive(obj):
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "autofunction"
    return "autodata"


def reference_rst(package):
    """The reStructuredText of the whole reference for ``package``."""
    submodules, others = public_names(package)
    root = importlib.import_module(package)
    lines = [f".. automodule:: {package}", "   :no-members:", ""]
    # A re-exported name is documented in its public submodule; one defined elsewhere (a private
    # module, the package itself) is documented here, so that no public name is left out.
    for name in others:
        obj = getattr(root, name)
        home = getattr(obj, "__module__", None)
        if home not in [f"{package}.{sub}" for sub in submodules] or name not in getattr(
            importlib.import_module(home), "__all__", []
        ):
            lines += [f".. {_directive(obj)}:: {package}.{name}", ""]
            if inspect.isclass(obj):
                lines[-1:-1] = ["   :members:", "   :inherited-members:"]
    for sub in submodules:
        full = f"{package}.{sub}"
        module = importlib.import_module(full)
        title = f"``{full}``"
        lines += [title, "-" * len(title), "", f".. automodule:: {full}"]
        if getattr(module, "__all__", None):
            lines += ["   :members:", "   :undoc-members:", "   :member-order: bysource"]
            if any(inspect.isclass(getattr(module, n)) for n in module.__all__):
                lines.append("   :inherited-members:")
        lines.append("")
    return lines


def _append_summary(app, what, name, obj, options, lines):
    """After a package module's docstring, a summary table of its ``__all__``."""
    package = app.config.api_reference_package
    if what == "module" and (name == package or name.startswith(package + ".")):
        names = sorted(getattr(obj, "__all__", []))
        if names:
            lines.extend(_summary(names))  # relative to the module autodoc has just set


_CITATION_LABEL = re.compile(r"^\.\. \[(\d+)\]")
_CITATION_REF = re.compile(r"\[(\d+)\]_")
_PREFIXED = re.compile(r"^R[0-9a-f]{8}-(\d+)$")


def _unique_citations(app, what, name, obj, options, lines):
    """Numbered references of a docstring (``.. [1] ...``) that work on a shared page.

    Citation labels are global to a page, and several docstrings on the API page each have a
    ``[1]``. A reference the docstring cites (``[1]_``) gets a label of its own,
    ``[R<digest of the name>-1]`` (``_relabel`` shows it as ``1`` again); one it lists without
    citing becomes a plain paragraph starting with ``[1]``, as it reads in the source.
    """
    if not any(_CITATION_LABEL.match(line.strip()) for line in lines):
        return
    text = "\n".join(lines)
    prefix = "R" + hashlib.sha1(name.encode()).hexdigest()[:8]
    cited = set(_CITATION_REF.findall(text))
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        match = _CITATION_LABEL.match(line.strip())
        if not match:
            out.append(_CITATION_REF.sub(lambda m: f"[{prefix}-{m.group(1)}]_", line))
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        body = [line.strip()[match.end():].strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > indent:
            body.append(lines[i].strip())
            i += 1
        number = match.group(1)
        if number in cited:
            out.append(" " * indent + f".. [{prefix}-{number}] " + " ".join(body))
        else:
            out += [" " * indent + f"[{number}] " + " ".join(body), ""]
    lines[:] = out


_TYPE_LINE = re.compile(r"^(\s*:(?:type|vartype|rtype)[^:]*:|\s*\*{0,2}\w+ : )(.*)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=\W|$)")


def _escape_type_names(app, what, name, obj, options, lines):
    """In type descriptions, ``n_features_in_`` is a name, not a reST hyperlink reference."""
    for i, line in enumerate(lines):
        match = _TYPE_LINE.match(line)
        if match and "`" not in match.group(2):
            lines[i] = match.group(1) + _TRAILING_UNDERSCORE.sub(r"\\_", match.group(2))


def _relabel(app, doctree, docname):
    for node in doctree.findall(nodes.Text):
        match = _PREFIXED.match(node.astext())
        if match and node.parent is not None:
            node.parent.replace(node, nodes.Text(match.group(1)))


def _listed_in_attributes(app, name):
    """Whether the class being documented lists ``name`` in its numpydoc "Attributes" section."""
    module, cls_name = app.env.temp_data.get("autodoc:module"), app.env.temp_data.get("autodoc:class")
    if not module or not cls_name:
        return False
    cls = _import(f"{module}.{cls_name}")
    section = re.search(r"^Attributes\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", inspect.getdoc(cls) or "",
                        flags=re.S | re.M)
    if not section:
        return False
    entries = (line.split(":")[0] for line in section.group(1).splitlines() if line and not line[0].isspace())
    return any(name in (part.strip() for part in entry.split(",")) for entry in entries)


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out class members defined outside the package (scikit-learn's ``get_params``,
    ``set_fit_request``, ...); members of the package's own private bases stay. Attributes and
    properties that the class's "Attributes" section documents appear once, from that section."""
    if what not in ("class", "exception"):
        return None
    if not callable(obj) and _listed_in_attributes(app, name):
        return True
    if obj is INSTANCEATTR or obj is UNINITIALIZED_ATTR:
        # Annotation-only fields (a dataclass's): their text is the class's "Attributes" section,
        # which napoleon already turns into entries; a second, empty entry would duplicate them.
        return True
    if isinstance(obj, property):
        obj = obj.fget
    obj = getattr(obj, "__func__", obj)
    owner = getattr(obj, "__objclass__", None)  # descriptors of built-in types (``args``, ``errno``)
    module = getattr(owner, "__module__", None) if owner is not None else getattr(obj, "__module__", None)
    if not (callable(obj) or owner is not None) or module is None:
        return None
    package = app.config.api_reference_package
    if module != package and not module.startswith(package + "."):
        return True
    return None


class APIReference(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        package = self.arguments[0]
        self.env.note_dependency(importlib.import_module(package).__file__)
        lines = reference_rst(package)
        text = "\n".join(lines)
        holder = nodes.section()
        holder.document = self.state.document
        nested_parse_with_titles(self.state, StringList(text.splitlines(), source=f"<api-reference {package}>"), holder)
        return holder.children


_DOCUMENTED = {}


def _documented_objects(env, package):
    """id(python object) -> documented full name, for the package's classes, functions, modules."""
    key = (package, len(env.get_domain("py").objects))
    if _DOCUMENTED.get("key") != key:
        found = {}
        for name, entry in env.get_domain("py").objects.items():
            if entry.aliased or not name.startswith(package + "."):
                continue
            obj = _import(name)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
                found.setdefault(id(obj), name)
        _DOCUMENTED.clear()
        _DOCUMENTED.update(key=key, found=found)
    return _DOCUMENTED["found"]


def _resolve_through_reexport(app, env, node, contnode):
    """Link ``kdelib.GaussianKDE`` (a re-export) to the entry of ``kdelib.kde.GaussianKDE``."""
    if node.get("refdomain") != "py":
        return None
    package = app.config.api_reference_package
    target = node.get("reftarget", "")
    if not target.startswith(package + "."):
        return None
    objects = env.get_domain("py").objects
    documented = _documented_objects(env, package)
    parts = target.split(".")
    for split in range(len(parts), 1, -1):
        prefix = ".".join(parts[:split])
        obj = _import(prefix)
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)):
            continue
        home = documented.get(id(obj))
        if home is None or home == prefix:
            continue
        candidate = ".".join([home, *parts[split:]])
        if candidate in objects:
            entry = objects[candidate]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, candidate)
    return None


def setup(app):
    app.add_config_value("api_reference_package", "kdelib", "env")
    app.add_directive("api-reference", APIReference)
    app.connect("missing-reference", _resolve_through_reexport)
    app.connect("autodoc-process-docstring", _unique_citations)
    app.connect("autodoc-process-docstring", _escape_type_names)
    app.connect("autodoc-process-docstring", _append_summary)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("doctree-resolved", _relabel)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
