"""The classroom's roster: a CSV of student ids, checked before any account is made."""

import pytest

from course_utils.grading.hub.accounts import RosterError, check_user_name, read_roster


def write(tmp_path, text):
    path = tmp_path / "roster.csv"
    path.write_text(text)
    return path


def test_a_roster_lists_student_ids_in_order_skipping_its_header_blank_lines_and_comments(tmp_path):
    assert read_roster(write(tmp_path, "student_id\nalice\n\n# late joiner\nbob,Bob Smith\n")) == ["alice", "bob"]


def test_every_bad_line_is_reported_at_once_with_its_line_number(tmp_path):
    with pytest.raises(RosterError) as error:
        read_roster(write(tmp_path, "alice\n../etc\nAlice Smith\nalice\n"))
    message = str(error.value)
    assert "3 problem(s)" in message
    assert "line 2" in message and "line 3" in message and "line 4: 'alice' is already on line 1" in message


def test_a_missing_or_empty_roster_says_what_to_write(tmp_path):
    with pytest.raises(RosterError, match="one student id per line"):
        read_roster(tmp_path / "nope.csv")
    with pytest.raises(RosterError, match="lists no students"):
        read_roster(write(tmp_path, "student_id\n"))


@pytest.mark.parametrize("name", ["root;rm", "-x", "UPPER", "a" * 33, ""])
def test_account_names_are_plain_lower_case_user_names(name):
    with pytest.raises(RosterError, match="not a usable account name"):
        check_user_name(name)
