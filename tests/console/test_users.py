"""CONSOLE_USERS: entries made by `manage.py console-user`, read back, and refused with a reason."""
import io

import pytest

from app.console import users
from scripts import console_user


def test_an_entry_reads_back_and_only_its_password_signs_in():
    line = users.entry("运维小李", users.OPERATOR, "correct horse") + "," + users.entry("bob", users.VIEWER, "b")
    found = users.parse(line)
    assert set(found) == {"运维小李", "bob"}
    assert found["运维小李"].can_act and not found["bob"].can_act
    assert users.authenticate(found, "运维小李", "correct horse") == found["运维小李"]
    assert users.authenticate(found, "运维小李", "Correct horse") is None
    assert users.authenticate(found, "nobody", "correct horse") is None
    assert "correct horse" not in line


def test_a_session_ends_when_the_password_changes():
    before = users.parse(users.entry("alice", users.OPERATOR, "one"))["alice"]
    after = users.parse(users.entry("alice", users.OPERATOR, "two"))
    assert users.by_session_id({"alice": before}, before.get_id()) == before
    assert users.by_session_id(after, before.get_id()) is None
    assert users.by_session_id(after, "alice") is None


@pytest.mark.parametrize("line, reason", [
    ("alice:admin:scrypt:1$a$b", "role 'admin' is not one of operator, viewer"),
    ("alice:operator:hunter2", "not a password hash"),
    ("alice:operator", "not a password hash"),
    ("al ice:viewer:scrypt:1$a$b", "the name must be"),
    ("api:viewer:scrypt:1$a$b", "reserved"),
    ("a:viewer:scrypt:1$a$b, a:operator:scrypt:1$a$b", "'a' is named twice"),
])
def test_a_bad_entry_is_refused_naming_it(line, reason):
    with pytest.raises(users.UsersError, match="CONSOLE_USERS entry") as refused:
        users.parse(line)
    assert reason in str(refused.value)


def test_empty_entries_are_skipped():
    assert users.parse("") == {} and users.parse(" , ,") == {}


def test_the_command_prints_the_line_to_put_in_the_environment():
    out, err = io.StringIO(), io.StringIO()
    assert console_user.main(["alice", "--role", "operator"], stdin=io.StringIO("s3cret\n"), out=out, err=err) == 0
    line = out.getvalue().strip()
    assert line.startswith("CONSOLE_USERS='alice:operator:scrypt:") and line.endswith("'")
    assert "s3cret" not in out.getvalue() + err.getvalue()
    user = users.parse(line.split("=", 1)[1].strip("'"))["alice"]
    assert users.authenticate({"alice": user}, "alice", "s3cret") == user


def test_the_command_refuses_an_empty_password_and_a_reserved_name():
    err = io.StringIO()
    assert console_user.main(["alice"], stdin=io.StringIO("\n"), out=io.StringIO(), err=err) == 2
    assert "empty" in err.getvalue()
    err = io.StringIO()
    assert console_user.main(["天网"], stdin=io.StringIO("x\n"), out=io.StringIO(), err=err) == 2
    assert "reserved" in err.getvalue()
