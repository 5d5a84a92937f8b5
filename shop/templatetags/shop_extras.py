"""Presentation helpers for storefront templates."""

from django import template

register = template.Library()

# Placeholder artwork for products without an image: a stable colour per product.
TONES = (
    "from-indigo-500 to-violet-600",
    "from-sky-500 to-indigo-600",
    "from-emerald-500 to-teal-600",
    "from-amber-500 to-orange-600",
    "from-rose-500 to-fuchsia-600",
    "from-slate-600 to-slate-800",
)


@register.filter
def tone(pk) -> str:
    """Gradient classes for the placeholder of product ``pk``."""
    return TONES[int(pk or 0) % len(TONES)]
