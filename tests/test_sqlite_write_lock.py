"""SQLite's write lock (app.infra.db): a transaction waits for another writer by polling BEGIN IMMEDIATE
every few milliseconds (SQLite's own busy handler sleeps up to 100 ms at a time), falls back to SQLite's
own wait after LOCK_POLL_SECONDS, and leaves every statement after it SQLite's usual 30 s busy timeout."""
import threading
import time

import pytest
from sqlalchemy import text

from app.infra import db


@pytest.fixture
def engines(tmp_path):
    url = f"sqlite:///{tmp_path}/lock.db"
    first, second = db.make_engine(url), db.make_engine(url)
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield first, second
    first.dispose()
    second.dispose()


def hold_the_write_lock(engine, seconds: float, taken: threading.Event) -> threading.Thread:
    def run():
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("poll_seconds", [2.0, 0.05])  # polled until free; or past the poll, SQLite's wait
def test_a_writer_waits_for_the_other_and_then_writes(engines, monkeypatch, poll_seconds):
    monkeypatch.setattr(db, "LOCK_POLL_SECONDS", poll_seconds)
    first, second = engines
    taken = threading.Event()
    holder = hold_the_write_lock(first, 0.3, taken)
    assert taken.wait(5)
    with second.begin() as conn:  # waits for the holder's commit, then writes
        conn.execute(text("INSERT INTO t VALUES (2)"))
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2  # the holder committed first
    holder.join(5)
    with second.connect() as conn:
        assert conn.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 2]
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000  # restored after the BEGIN
