"""Make a student's notebook safe to render in the instructor's browser (feedback pages, the formgrader).

    >>> safe_notebook(nb)          # in place: no script, event handler or javascript: URL is left  # doctest: +SKIP
    >>> page = with_csp(html)      # and the page itself forbids scripts                             # doctest: +SKIP

Everything a student controls that a renderer turns into HTML goes through nh3 (a binding of the Rust
``ammonia`` sanitizer; allow-list based, not regexes): ``text/html`` outputs, and markdown (cells and
``text/markdown`` outputs), which is rendered to HTML first so that links written in markdown syntax are
cleaned too; an image may only show data it carries (no URL: nothing loads from elsewhere when a page
opens). Outputs of any other kind than plain text, sanitized HTML/markdown, PNG/JPEG images (whose data
must really be base64) and error tracebacks are replaced by a note: JavaScript, SVG (which can carry
script), widgets and unknown types never reach a page. Every other field is normalised on the way
(execution counts are numbers or nothing, metadata are small dicts), so a page never fails to render.
Feedback pages also carry a Content-Security-Policy that forbids every script and every load from
elsewhere, so even a renderer's own slip cannot run one. ``escaped_notebook`` is the same without any
rendering (markdown and HTML shown as text), for a notebook whose rendering took too long.
"""

from __future__ import annotations

import html
import json
import re

import nbformat
import nh3

SAFE_TYPES = ("text/plain", "text/html", "text/markdown", "image/png", "image/jpeg")
#: the longest markdown rendered as markdown (longer cells are shown as text: rendering time grows with size)
MARKDOWN_CHARS = 20_000
BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; font-src data:; "
    "script-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'"
)
NOTE = "[output removed by the grader: {kinds} cannot be shown safely]"
OUTPUT_TYPES = ("stream", "error", "display_data", "execute_result")
#: the largest metadata kept as is (a cell's, an output's or the notebook's), as JSON
METADATA_BYTES = 64 * 1024
#: of oversized notebook or cell metadata, only these keys are kept (if each is small)
METADATA_KEPT = ("nbgrader", "kernelspec", "language_info")
IMAGE_DATA = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*$")


#: URL schemes nh3 keeps: its own, and data: (which ``_local_images_only`` allows for images only)
URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"data"}


def _local_images_only(tag: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: an image's source must be data it carries (a URL would load when the page opens);
    nothing else may be a data: URL."""
    if tag == "img" and attribute in ("src", "srcset"):
        return value if IMAGE_DATA.match(value) else None
    if value.strip().lower().startswith("data:"):
        return None
    return value


def clean(html: str) -> str:
    """Sanitized HTML: allow-listed tags and attributes only, no scripts, handlers, unsafe URL schemes, nor images
    from elsewhere.

        >>> clean('<b onclick="x()">hi</b><script>alert(1)</script><img src="https://tracker.example/p.png">')
        '<b>hi</b><img>'
    """
    return nh3.clean(html, attribute_filter=_local_images_only, url_schemes=URL_SCHEMES)


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
    if isinstance(value, list):
        return "".join(item if isinstance(item, str) else str(item) for item in value)
    return value if isinstance(value, str) else str(value)


def execution_count(value) -> int | None:
    """An execution count as the notebook format allows it: a number, else nothing.

    >>> execution_count(3), execution_count("x"), execution_count(-1), execution_count(True)
    (3, None, None, None)
    """
    return value if type(value) is int and 0 <= value < 2**31 else None


def metadata(value) -> dict:
    """Metadata as the notebook format allows it and of a bounded size (else its small known keys only).

    >>> metadata("x"), metadata({"nbgrader": {"grade": True}, "junk": "y" * 100_000})
    ({}, {'nbgrader': {'grade': True}})
    """
    if not isinstance(value, dict):
        return {}
    try:
        if len(json.dumps(value)) <= METADATA_BYTES:
            return value
    except (TypeError, ValueError, RecursionError):
        pass
    kept = {}
    for key in METADATA_KEPT:
        try:
            if isinstance(value.get(key), dict) and len(json.dumps(value[key])) <= METADATA_BYTES:
                kept[key] = value[key]
        except (TypeError, ValueError, RecursionError):
            continue
    return kept


def safe_output(output):
    """A copy of one notebook output that is safe to render (see the module docstring)."""
    kind = output.get("output_type") if isinstance(output, dict) else None
    if kind not in OUTPUT_TYPES:
        return nbformat.v4.new_output("stream", name="stderr", text=NOTE.format(kinds="this output") + "\n")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=_text(output.get("text", "")))
    if kind == "error":
        traceback = output.get("traceback") if isinstance(output.get("traceback"), list) else []
        return nbformat.v4.new_output(
            "error",
            ename=_text(output.get("ename", "")),
            evalue=_text(output.get("evalue", "")),
            traceback=[_text(line) for line in traceback[:200]],
        )
    data, kept, dropped = output.get("data"), {}, []
    for mime, value in data.items() if isinstance(data, dict) else ():
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
        note = NOTE.format(kinds=", ".join(str(mime)[:60] for mime in dropped[:5]) or "it")
        return nbformat.v4.new_output("stream", name="stderr", text=note + "\n")
    if kind == "execute_result":
        return nbformat.v4.new_output(
            "execute_result", data=kept, execution_count=execution_count(output.get("execution_count"))
        )
    return nbformat.v4.new_output("display_data", data=kept)


def _normalised(nb, markdown, output) -> None:
    nb.metadata = metadata(nb.get("metadata"))
    for cell in nb.cells:
        cell.pop("attachments", None)
        cell.metadata = metadata(cell.get("metadata"))
        cell.source = _text(cell.get("source", ""))
        if cell.cell_type == "markdown":
            cell.source = markdown(cell.source)
        elif cell.cell_type == "raw":
            cell.metadata.pop("format", None)
            cell.metadata.pop("raw_mimetype", None)
        elif cell.cell_type == "code":
            cell.execution_count = execution_count(cell.get("execution_count"))
            outputs = cell.get("outputs")
            cell.outputs = [output(o) for o in outputs] if isinstance(outputs, list) else []
    for drop in (_notebook_metadata, _cells_metadata):  # what the format still refuses goes, in that order
        try:
            nbformat.validate(nb)
            return
        except nbformat.ValidationError:
            drop(nb)


def _notebook_metadata(nb) -> None:
    nb.metadata = {}


def _cells_metadata(nb) -> None:
    for cell in nb.cells:
        cell.metadata = {}


def safe_notebook(nb):
    """Sanitize every markdown cell and output of ``nb`` in place, normalise every other field; return it."""
    _normalised(nb, markdown_as_safe_html, safe_output)
    return nb


def _escaped(source: str) -> str:
    return f"<div>\n<pre>{html.escape(source[:MARKDOWN_CHARS])}</pre>\n</div>".replace("\n\n", "\n&#10;")


def _escaped_output(output):
    """An output reduced to what shows without rendering: its plain text and images (no HTML, no markdown)."""
    if isinstance(output, dict) and isinstance(output.get("data"), dict):
        output = dict(
            output,
            data={
                mime: value
                for mime, value in output["data"].items()
                if mime in ("text/plain", "image/png", "image/jpeg")
            },
        )
    return safe_output(output)


def escaped_notebook(nb):
    """Like ``safe_notebook``, but nothing is rendered: markdown cells as escaped text, outputs as their plain
    text or images only (linear in the notebook's size, for a notebook whose rendering took too long)."""
    _normalised(nb, _escaped, _escaped_output)
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
