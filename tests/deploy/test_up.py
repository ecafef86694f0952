"""`manage.py up`'s parts that a new user meets: the Redis database it takes and leaves clean, its
banner, its ports, and the Procfile it runs (the fresh-clone test runs the whole of it, slowly)."""
from __future__ import annotations

import os
import socket
import subprocess

import pytest
import redis

from devkit import stores
from scripts import procfile, up


@pytest.fixture
def machine_redis():
    """A redis-server standing in for the machine's, so claims never touch the suite's own Redis."""
    proc, url = stores.start_embedded_redis()
    yield url
    proc.terminate()
    proc.wait(10)


def owner(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def test_up_takes_the_first_empty_database_marks_it_and_leaves_it_empty(machine_redis):
    redis.Redis.from_url(f"{machine_redis}/1").set("someone-elses", "data")
    me = owner(os.getpid())
    claimed = up.claim_database(machine_redis, me)
    assert claimed == f"{machine_redis}/2"  # db 0 is never taken, db 1 holds another's data
    client = redis.Redis.from_url(claimed)
    client.set("tw:index", "ours")
    up.release_database(claimed, me)
    assert client.dbsize() == 0
    assert redis.Redis.from_url(f"{machine_redis}/1").get("someone-elses") == b"data"


def test_two_ups_never_share_a_database(machine_redis):
    first = up.claim_database(machine_redis, owner(os.getpid()))
    second = up.claim_database(machine_redis, owner(os.getppid()))
    assert first and second and first != second


def test_a_database_left_by_a_killed_up_is_taken_again_and_cleaned(machine_redis):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    left = redis.Redis.from_url(f"{machine_redis}/1")
    left.set(up.CLAIM_KEY, owner(dead.pid))
    left.set("tw:stale", "1")
    claimed = up.claim_database(machine_redis, owner(os.getpid()))
    assert claimed == f"{machine_redis}/1" and left.get("tw:stale") is None


def test_the_banner_says_where_the_key_comes_from_never_the_key():
    env = {"PORT": "8000", "DATABASE_URL": "sqlite:///x.db", "REDIS_URL": "redis://127.0.0.1:6379/3",
           "TIANWANG_API_KEYS": "k-3f9a1c7e5b", "QINGJIAN_WS_URL": "ws://127.0.0.1:9528"}
    text = up.banner(env)
    assert "k-3f9a1c7e5b" not in text and "TIANWANG_API_KEYS" in text
    demo = dict(env, TIANWANG_API_KEYS="")
    up.demo_defaults(demo)
    assert demo["TIANWANG_API_KEYS"] == up.DEV_API_KEY and up.DEV_API_KEY not in up.banner(demo)


def test_the_fakes_ports_move_with_fake_port_base():
    env = {"FAKE_PORT_BASE": "41000"}
    up.demo_defaults(env)
    assert env["QINGJIAN_WS_URL"] == "ws://127.0.0.1:41000"
    assert env["TIANWANG_CALLBACK_URL"].startswith("http://127.0.0.1:41002/")
    assert "41001" in up.banner({**env, "DATABASE_URL": "d", "REDIS_URL": "r"})  # where /say is


def test_up_runs_the_procfile_lines_with_this_venvs_programs():
    lines = dict(line.split(": ", 1) for line in up.procfile({}, []).strip().splitlines())
    assert set(lines) == set(procfile.read()) - {"release"}
    for name, command in lines.items():
        assert command.startswith(str(up.BIN)), command
        assert command.split(" ", 1)[1] == procfile.read()[name].split(" ", 1)[1]


def test_a_procfile_line_that_is_not_name_colon_command_is_refused(tmp_path):
    bad = tmp_path / "Procfile"
    bad.write_text("web gunicorn wsgi:app\n")
    with pytest.raises(ValueError, match="not a `name: command` line"):
        procfile.read(bad)
    with pytest.raises(ValueError, match="not one of"):
        procfile.in_venv("node server.js", up.BIN)


def test_web_gets_readmes_port_under_honcho_unless_port_is_set(tmp_path):
    """honcho hands each Procfile line a PORT of its own, 5000 for the first unless PORT is set: up must
    set it, or web listens on 5000 while README and the banner say 8000 (seen on a fresh clone)."""
    (tmp_path / "Procfile").write_text('web: python3 -c "import os; print(\'port=\' + os.environ[\'PORT\'])"\n')

    def web_port(environ: dict) -> str:
        env = {**up.system_env(environ), "PATH": os.environ["PATH"]}
        out = subprocess.run([str(up.BIN / "honcho"), "-f", str(tmp_path / "Procfile"), "start"], env=env,
                             capture_output=True, text=True, timeout=60).stdout
        return out.split("port=", 1)[1].split()[0]

    assert web_port({}) == "8000"
    assert web_port({"PORT": "8123"}) == "8123"
