"""Make a student's notebook safe to render in the instructor's browser (feedback pages, the formgrader).

    >>> safe_notebook(nb)          # in place: no script, event handler or javascript: URL is left  # doctest: +SKIP
    >>> page = with_csp(html)      # and the page itself forbids scripts                             # doctest: +SKIP

Everything a student controls that a renderer turns into HTML goes through nh3 (a binding of the Rust
``ammonia`` sanitizer; allow-list based, not regexes): ``text/html`` outputs, and markdown (cells and
``text/markdown`` outputs), which is rendered to HTML first so that links written in markdown syntax are
cleaned too. Outputs of any other kind than plain text, sanitized HTML/markdown, PNG/JPEG images (whose data
must really be base64) and error tracebacks are replaced by a note: JavaScript, SVG (which can carry
script), widgets and unknown types never reach a page. Feedback pages also carry a Content-Security-Policy
that forbids every script, so even a renderer's own slip cannot run one.
"""
from __future__ import annotations

import html
import re

import nbformat
import nh3

SAFE_TYPES = ("text/plain", "text/html", "text/markdown", "image/png", "image/jpeg")
#: the longest markdown rendered as markdown (longer cells are shown as text: rendering time grows with size)
MARKDOWN_CHARS = 20_000
BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
       "script-src 'none'; form-action 'none'; base-uri 'none'")
NOTE = "[output removed by the grader: {kinds} cannot be shown safely]"


def clean(html: str) -> str:
    """Sanitized HTML: allow-listed tags and attributes only, no scripts, handlers or unsafe URL schemes.

        >>> clean('<b onclick="x()">hi</b><script>alert(1)</script>')
        '<b>hi</b>'
    """
    return nh3.clean(html)


def markdown_as_safe_html(source: str) -> str:
    """A markdown cell's source as sanitized HTML that a markdown renderer passes through untouched.

        >>> "javascript" in markdown_as_safe_html("[x](javascript:alert(1)) **b**")
        False

    The markdown is rendered first (so a ``javascript:`` link written in markdown syntax is an ``<a>`` the
    sanitizer sees), then cleaned, then wrapped in one HTML block without blank lines, which CommonMark
    renders verbatim.
    """
    from nbconvert.filters.markdown import markdown2html

    if len(source) > MARKDOWN_CHARS:  # rendering time grows with size: show long cells as plain text
        cleaned = f"<pre>{html.escape(source[:MARKDOWN_CHARS])}\n[grader: the rest of this cell is not shown]</pre>"
    else:
        cleaned = clean(markdown2html(source)).strip()
    while "\n\n" in cleaned:
        cleaned = cleaned.replace("\n\n", "\n")
    return f"<div>\n{cleaned}\n</div>"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def safe_output(output):
    """A copy of one notebook output that is safe to render (see the module docstring)."""
    kind = output.get("output_type")
    if kind == "stream":
        return nbformat.v4.new_output("stream", name=output.get("name", "stdout"), text=_text(output.get("text", "")))
    if kind == "error":
        return nbformat.v4.new_output("error", ename=str(output.get("ename", "")), evalue=str(output.get("evalue", "")),
                                      traceback=[str(line) for line in output.get("traceback", [])][:200])
    data, kept, dropped = output.get("data", {}) or {}, {}, []
    for mime, value in data.items():
        text = _text(value)
        if mime == "text/plain":
            kept[mime] = text
        elif mime == "text/html":
            kept[mime] = clean(text)
        elif mime == "text/markdown":
            kept["text/html"] = markdown_as_safe_html(text)
        elif mime in ("image/png", "image/jpeg") and BASE64.match(text):
            kept[mime] = text
        else:
            dropped.append(mime)
    if not kept:
        return nbformat.v4.new_output("stream", name="stderr", text=NOTE.format(kinds=", ".join(dropped) or "it") + "\n")
    if kind == "execute_result":
        return nbformat.v4.new_output("execute_result", data=kept, execution_count=output.get("execution_count"))
    return nbformat.v4.new_output("display_data", data=kept)


def safe_notebook(nb):
    """Sanitize every markdown cell and output of ``nb`` in place; drop attachments; return it."""
    for cell in nb.cells:
        cell.pop("attachments", None)
        if cell.cell_type == "markdown":
            cell.source = markdown_as_safe_html(cell.source)
        elif cell.cell_type == "raw":
            cell.metadata.pop("format", None)
            cell.metadata.pop("raw_mimetype", None)
        elif cell.cell_type == "code":
            cell.outputs = [safe_output(o) for o in cell.get("outputs", [])]
    return nb


def with_csp(page: str) -> str:
    """The HTML page with a Content-Security-Policy meta tag first in its head (no script can run).

        >>> "script-src 'none'" in with_csp("<html><head></head><body></body></html>")
        True
    """
    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    if "<head>" in page:
        return page.replace("<head>", "<head>\n" + meta, 1)
    return meta + page
