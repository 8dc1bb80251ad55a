"""course_utils.grading.pipeline.safe_html and rendering: every field a renderer reads is normalised, images only
show data they carry, a notebook made safe is a valid notebook, and the plain fallback renders nothing."""

from __future__ import annotations

import json

import nbformat

from course_utils.grading.pipeline.rendering import plain_notebook_json
from course_utils.grading.pipeline.safe_html import CSP, clean, escaped_notebook, safe_notebook

PIXEL = "https://tracker.example/pixel.png"


def hostile():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("1"),
            nbformat.v4.new_markdown_cell(
                f'![x]({PIXEL}) <img src="//tracker.example/p.png"> <img src="data:image/png;base64,iVBORw0KGgo=">'
            ),
        ]
    )
    cell = nbformat.from_dict(dict(nb.cells[0]))
    cell["execution_count"] = "x"
    cell["metadata"] = {"junk": "y" * 100_000, "nbgrader": {"grade": False}}
    cell["outputs"] = [
        {"output_type": "execute_result", "execution_count": -1, "data": {"text/plain": ["a", 1]}, "metadata": {}},
        {"output_type": "stream", "name": "evil", "text": 42},
        {"output_type": "made-up", "data": {}},
        {"output_type": "display_data", "data": {"text/html": f'<img src="{PIXEL}">'}, "metadata": {}},
        "not even a dict",
    ]
    nb.cells[0] = cell
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3"}, "huge": ["z"] * 100_000}
    return nb


def test_a_hostile_notebook_made_safe_is_valid_and_loads_nothing_from_elsewhere():
    nb = safe_notebook(hostile())
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    assert "tracker.example" not in text and "data:image/png;base64,iVBORw0KGgo=" in text
    cell = nb.cells[0]
    assert cell.execution_count is None and cell.metadata == {"nbgrader": {"grade": False}}
    assert cell.outputs[0]["execution_count"] is None and cell.outputs[1]["name"] == "stdout"
    assert nb.metadata == {"kernelspec": {"name": "python3", "display_name": "Python 3"}}


def test_metadata_the_format_refuses_is_dropped_so_the_notebook_stays_valid():
    nb = hostile()
    nb.metadata = {"kernelspec": {"name": "python3"}}  # display_name missing
    nb.cells[1].metadata = {"nbgrader": "not a dict"}
    nbformat.validate(safe_notebook(nb))


def test_the_plain_fallback_is_valid_and_renders_no_markdown():
    nb = escaped_notebook(hostile())
    nbformat.validate(nb)
    assert nb.cells[1].source.startswith("<div>\n<pre>![x](https") and "<img" not in nb.cells[1].source
    assert "text/html" not in nbformat.writes(nb)
    nb = hostile()
    nb.cells[0].outputs.pop()  # nbformat itself cannot read an output that is not a dict
    shown = nbformat.reads(plain_notebook_json(json.dumps(nb), "why"), as_version=4)
    assert shown.cells[0].source == "[grader: this notebook is shown as plain text: why]" and len(shown.cells) == 3
    nothing = nbformat.reads(plain_notebook_json(json.dumps(hostile()), "why"), as_version=4)
    assert [cell.source for cell in nothing.cells] == ["[grader: this notebook is shown as plain text: why]"]


def test_pages_forbid_scripts_and_loads_from_elsewhere():
    assert "img-src 'self' data:" in CSP and "script-src 'none'" in CSP and "default-src 'none'" in CSP
    assert clean(f'<img src="{PIXEL}" onerror="x()">') == "<img>"
    assert clean('<a href="data:text/html,<script>x()</script>">a</a>') == '<a rel="noopener noreferrer">a</a>'
