"""course_utils.records, the grader's side: a refused record file is refused with a reason that quotes nothing
of it (its keys and values are whatever the kernel wrote, and the reason reaches the learner's feedback)."""

from __future__ import annotations

import io
import os

import pytest
import torch

from course_utils.records import RecordError, load_record_bytes

SECRET = "assert double(21) == 42  # hidden"


def saved(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "records",
    [
        {"LEAK:" + SECRET: {"kind": "value", "value": 1, "params": {}}},
        {"ex_a/x": {"kind": "LEAK:" + SECRET, "value": 1, "params": {}}},
        {"ex_a/x": {"kind": "value", "value": 1, "params": {}, "LEAK:" + SECRET: 1}},
        {"ex_a/x": "LEAK:" + SECRET},
        ["LEAK:" + SECRET],
    ],
)
def test_a_malformed_record_file_is_refused_without_quoting_it(records):
    with pytest.raises(RecordError) as refused:
        load_record_bytes(saved(records), 2**20)
    assert "LEAK" not in str(refused.value) and "double" not in str(refused.value)


def test_a_file_torch_refuses_is_refused_without_torchs_message(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true  # LEAK " + SECRET,))

    with pytest.raises(RecordError) as refused:
        load_record_bytes(saved({"ex_a/x": {"kind": "value", "value": Evil(), "params": {}}}), 2**20)
    assert "cannot be read safely" in str(refused.value) and "LEAK" not in str(refused.value)
    assert "Evil" not in str(refused.value) and "system" not in str(refused.value)
