"""A Sphinx extension of the book: each page loads every script once.

Jupyter Book 1 registers some inline configuration scripts twice (sphinx-thebe's ``const
THEBE_JS_URL = ...`` among them), and the second ``const`` declaration is a JavaScript error in
the reader's console. The page context is cleaned just before rendering: a script identical to
an earlier one (same file, priority and attributes, inline body included) is dropped.
"""

from __future__ import annotations


def script_key(script) -> tuple:
    """What makes two of Sphinx's ``_JavaScript`` entries the same script: file (an inline
    script has ``None`` or ``""``), priority and attributes (the inline body among them)."""
    attributes = getattr(script, "attributes", {})
    return (getattr(script, "filename", script) or "", getattr(script, "priority", 500),
            tuple(sorted(attributes.items())))


def unique_scripts(scripts: list) -> list:
    """``scripts`` without repeats, in their first order."""
    unique: dict[tuple, object] = {}
    for script in scripts:
        unique.setdefault(script_key(script), script)
    return list(unique.values())


def _drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])


def setup(app):
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

