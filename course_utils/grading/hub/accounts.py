"""The class on the hub: its roster and its members' local accounts, with per-user random passwords.

    >>> read_roster(Path("roster.csv"))            # doctest: +SKIP
    ['alice', 'bob']

* ``read_roster``: a CSV of student ids (first column; a header ``student_id``/``id``/``username`` is
  skipped), each a valid local user name, no duplicates; bad lines are reported all at once, by line.
* ``ensure_account`` / ``remove_account``: real local accounts (``useradd``/``userdel``), each in the
  course's group, each home private (``0700``: no student reads another's work); only accounts this module
  created are ever removed (``accounts.json`` lists them), and their homes are kept unless asked otherwise.
* ``set_passwords``: a fresh random password for each account it created (``chpasswd``), written to a
  ``0600`` CSV that only the instructor's account can read; no password is ever stored in the repository.
  JupyterHub checks them with PAM, the system's own login; ``classroom.py`` says how to plug in the
  institution's authenticator instead.
"""

from __future__ import annotations

import csv
import grp
import json
import os
import pwd
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from course_utils.atomic import write_atomically

#: what useradd accepts on every common distribution (and nbgrader as a student id)
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
HEADERS = {"student_id", "id", "username", "user", "student"}


class RosterError(ValueError):
    """The roster or an account name cannot be used; the message says which line and what to change."""


def check_user_name(name: str, what: str = "name") -> str:
    """``name`` when it is a usable local user name, else a RosterError saying what is allowed.

    >>> check_user_name("alice")
    'alice'
    """
    if not USER_NAME.match(name):
        raise RosterError(
            f"{what} {name!r} is not a usable account name: use lower-case letters, digits, "
            "_ and - (starting with a letter or _), at most 32 characters."
        )
    return name


def read_roster(path: Path) -> list[str]:
    """The student ids of a roster CSV, in file order (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise RosterError(f"No roster file {path}: write a CSV with one student id per line (header student_id).")
    students, problems, seen = [], [], {}
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            name = row[0].strip() if row else ""
            if not name or name.startswith("#") or (number == 1 and name.lower() in HEADERS):
                continue
            try:
                check_user_name(name, "student id")
            except RosterError as error:
                problems.append(f"line {number}: {error}")
                continue
            if name in seen:
                problems.append(f"line {number}: {name!r} is already on line {seen[name]}")
                continue
            seen[name] = number
            students.append(name)
    if problems:
        raise RosterError(f"{path} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    if not students:
        raise RosterError(f"{path} lists no students: write one student id per line.")
    return students


@dataclass(frozen=True)
class Accounts:
    """The accounts of one classroom: its group, where new homes go, and the ledger of those it created."""

    group: str
    homes: Path
    ledger: Path  # accounts.json: the names this classroom created (and may remove)

    def created(self) -> list[str]:
        return json.loads(self.ledger.read_text()) if self.ledger.is_file() else []

    def _record(self, names: list[str]) -> None:
        write_atomically(self.ledger, json.dumps(sorted(set(names)), indent=1))


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def ensure_group(group: str) -> None:
    try:
        grp.getgrnam(group)
    except KeyError:
        subprocess.run(["groupadd", group], check=True)


def ensure_account(accounts: Accounts, name: str) -> bool:
    """Create the local account ``name`` (home under ``accounts.homes``) unless it exists; True if created.
    Either way its home ends up private to it (``0700``)."""
    ensure_group(accounts.group)
    if account_exists(name):
        subprocess.run(["usermod", "--append", "--groups", accounts.group, name], check=True)
        created = False
    else:
        accounts.homes.mkdir(parents=True, exist_ok=True)
        accounts._record(accounts.created() + [name])  # recorded first: a crash still lets remove() find it
        subprocess.run(
            [
                "useradd",
                "--create-home",
                "--home-dir",
                str(accounts.homes / name),
                "--shell",
                "/bin/bash",
                "--gid",
                accounts.group,
                "--comment",
                f"{accounts.group} classroom",
                "-K",
                "HOME_MODE=0700",
                name,
            ],
            check=True,
        )
        created = True
    home = Path(pwd.getpwnam(name).pw_dir)
    if home.is_dir() and not home.is_symlink():
        home.chmod(0o700)
    return created


def remove_account(accounts: Accounts, name: str, keep_home: bool = True) -> Path | None:
    """Remove an account this classroom created, with its processes (others are left alone). Its home is kept
    (given to root, still private: no later account that reuses the uid owns it) unless ``keep_home`` is
    False; returns the home kept, if any."""
    if name not in accounts.created():
        return None
    kept = None
    if account_exists(name):
        home = Path(pwd.getpwnam(name).pw_dir)
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", *([] if keep_home else ["--remove"]), name], check=False, capture_output=True)
        if keep_home and home.is_dir() and not home.is_symlink():
            subprocess.run(["chown", "-R", "--no-dereference", "root:root", str(home)], check=False)
            home.chmod(0o700)
            kept = home
    accounts._record([n for n in accounts.created() if n != name])
    return kept


def remove_all(accounts: Accounts, keep_homes: bool = True) -> list[Path]:
    """Remove every account the classroom created (homes kept unless ``keep_homes`` is False), then its group
    when no account uses it any more; return the homes kept."""
    kept = [home for name in accounts.created() if (home := remove_account(accounts, name, keep_homes))]
    try:
        group = grp.getgrnam(accounts.group)
    except KeyError:
        return kept
    if not group.gr_mem and not any(p.pw_gid == group.gr_gid for p in pwd.getpwall()):
        subprocess.run(["groupdel", accounts.group], check=False)
    return kept


def set_passwords(names: list[str], out: Path, reader: str) -> Path:
    """Give each of ``names`` a random password; append them to the CSV ``out`` (mode 0600, owned by ``reader``)."""
    rows = [(name, secrets.token_urlsafe(12)) for name in names]
    if rows:
        subprocess.run(["chpasswd"], input="".join(f"{n}:{p}\n" for n, p in rows), text=True, check=True)
    existing = out.read_text() if out.is_file() else "account,password\n"
    kept = [line for line in existing.splitlines()[1:] if line.split(",", 1)[0] not in names]
    text = "account,password\n" + "".join(f"{line}\n" for line in kept) + "".join(f"{n},{p}\n" for n, p in rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(out, 0o600)
    account = pwd.getpwnam(reader)
    os.chown(out, account.pw_uid, account.pw_gid)
    return out


def read_passwords(path: Path) -> dict[str, str]:
    """account -> password from ``set_passwords``'s CSV."""
    with open(path, newline="") as handle:
        return {row["account"]: row["password"] for row in csv.DictReader(handle)}
