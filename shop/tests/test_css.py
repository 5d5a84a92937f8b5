"""The committed stylesheet is built from the templates: a class written in a template but missing from
static/css/app.css silently does nothing in the browser (a layout that falls apart on one screen
size), so every class the storefront templates use must be in the built file."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

# Hooks for scripts, not styles.
NOT_STYLES = {"copy"}


def _built_selectors() -> set[str]:
    css = (Path(settings.BASE_DIR) / "static" / "css" / "app.css").read_text()
    return {name.replace("\\", "") for name in re.findall(r"\.((?:\\.|[\w-])+)", css)}


def test_every_storefront_template_class_is_in_the_built_css():
    built = _built_selectors()
    templates = Path(settings.BASE_DIR) / "templates"
    missing: dict[str, set[str]] = {}
    for path in templates.rglob("*.html"):
        if path.relative_to(templates).parts[0] in {"admin", "emails"}:  # unfold's CSS / inline e-mail styles
            continue
        for attribute in re.findall(r'class="([^"]*)"', path.read_text()):
            for name in re.sub(r"{%.*?%}|{{.*?}}", " ", attribute).split():
                if name not in built and name not in NOT_STYLES:
                    missing.setdefault(name, set()).add(str(path.relative_to(templates)))
    assert not missing, f"rebuild the CSS (make css); classes missing from static/css/app.css: {missing}"
