"""Escaping HTML helpers for the console's server-rendered pages.

Why not a template library: Jinja2 (the well-kept choice, with autoescaping) is not among
keyturn's dependencies, and the pages are small tables and forms. So markup is built from
Python, and escaping is by type instead of by discipline: ``Html`` is markup that is already
safe, and every other value that reaches ``tag``, ``join`` or ``page`` goes through
``html.escape`` (quotes included, so attribute values are safe too). A client-controlled
string (an instance name, an account name, an audit record's user agent) can therefore never
become markup. No inline script or style is ever produced: the Content-Security-Policy forbids
them, and behaviour lives in ``static/console.js``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode


class Html(str):
    """Markup that is safe to send as is (built by these helpers)."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` as safe markup: ``Html`` unchanged, None empty, anything else escaped."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def join(children: Iterable[object]) -> Html:
    return Html("".join(esc(c) for c in children))


def tag(element: str, /, *children: object, **attributes: object) -> Html:
    """``<element attributes>children</element>``; ``class_`` is ``class``, ``data_x`` is
    ``data-x``, True is a bare attribute, False or None leaves it out."""
    attrs = "".join(_attribute(k, v) for k, v in attributes.items())
    if element in _VOID:
        return Html(f"<{element}{attrs}>")
    return Html(f"<{element}{attrs}>{join(children)}</{element}>")


def _attribute(key: str, value: object) -> str:
    name = key.rstrip("_").replace("_", "-")
    if value is None or value is False:
        return ""
    if value is True:
        return f" {name}"
    return f' {name}="{esc(value)}"'


_VOID = frozenset({"input", "meta", "link", "br", "hr", "img"})


def link(href: str, /, *children: object, **attributes: object) -> Html:
    return tag("a", *children, href=href, **attributes)


def href(path: str, query: Mapping[str, object] | None = None) -> str:
    """``path`` with the non-empty ``query`` values, URL-encoded (escaped later with it)."""
    values = {k: str(v) for k, v in (query or {}).items() if v not in (None, "")}
    return path + ("?" + urlencode(values) if values else "")


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], **attributes: object) -> Html:
    head = tag("thead", tag("tr", *(tag("th", h) for h in headers)))
    body = tag("tbody", *(tag("tr", *(tag("td", c) for c in row)) for row in rows))
    return tag("table", head, body, **attributes)


def hidden(name: str, value: str, /) -> Html:
    return tag("input", type="hidden", name=name, value=value)


def field(label: str, control: Html) -> Html:
    return tag("label", tag("span", label), control)


def badge(text: str) -> Html:
    """A state or outcome shown in its colour (``static/console.css`` keys on the class)."""
    return tag("span", text, class_=f"badge badge-{text.replace(' ', '-')}")
