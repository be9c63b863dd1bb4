"""Unit tests of the console's markup helpers: every value that is not already ``Html`` is
escaped, in text and in attribute values alike, so a client-controlled string never becomes
markup."""

from __future__ import annotations

from keyturn.console.html import Html, esc, href, table, tag

HOSTILE = "<img src=x onerror=alert(1)>\"'&"


def test_text_and_attributes_are_escaped() -> None:
    made = tag("td", HOSTILE, title=HOSTILE, data_name=HOSTILE)
    assert "<img" not in made
    assert made.count("&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;") == 3
    assert made.startswith('<td title="') and ' data-name="' in made


def test_markup_is_kept_and_nothing_else() -> None:
    assert tag("p", tag("b", "x")) == "<p><b>x</b></p>"
    assert tag("p", "<b>x</b>") == "<p>&lt;b&gt;x&lt;/b&gt;</p>"
    assert esc(None) == "" and esc(Html("<br>")) == "<br>" and esc(3) == "3"


def test_boolean_attributes_and_void_elements() -> None:
    assert tag("input", type="checkbox", checked=True, disabled=False) == (
        '<input type="checkbox" checked>'
    )
    assert tag("button", "x", class_="primary") == '<button class="primary">x</button>'


def test_tables_escape_their_cells_and_links_their_query() -> None:
    made = table(("name",), [(HOSTILE,)])
    assert "<img" not in made and "<td>&lt;img" in made
    assert href("/console/instances", {"q": "a&b <c>", "product": ""}) == (
        "/console/instances?q=a%26b+%3Cc%3E"
    )
