"""Small checks the firing drills end with, read from the fakes' records (`sent`, `failed`,
`duplicates_ignored` of the 轻简 fake; `events` and `received` of the 天网 fake) and the task's history.

Kept apart so they can give way to the suite's shared "four checks" helper without touching the drills.
"""
from __future__ import annotations

from collections import Counter

from app import runtime
from app.services import actions
from tests.conftest import uid

FILE = {"type": "send_file", "file_url": "https://example.com/a.zip", "file_name": "a.zip",
        "message": "这是您要的文件"}  # two steps: the text, then the file


def step_of(req_id: str) -> str:
    """`<task>:<step>` of a req_id `<task>:<step>:<attempt>`."""
    return req_id.rsplit(":", 1)[0]


def task_of(req_id: str) -> str:
    return req_id.rsplit(":", 2)[0]


def frames_of(qingjian, task_id: str) -> list[dict]:
    """Every send of the task 轻简 took: delivered (`sent`) or refused (`failed`)."""
    return [s for s in list(qingjian.sent) + list(qingjian.failed) if task_of(s["req_id"]) == task_id]


def delivered(qingjian, customer: str) -> list[tuple[str, str]]:
    """What the customer received: (action, req_id) in delivery order."""
    return [(s["action"], s["req_id"]) for s in qingjian.sent_to(customer)]


def steps_sent_twice(qingjian) -> dict[str, int]:
    """Steps delivered more than once (the fake records a step once; this guards against that changing)."""
    counts = Counter(step_of(s["req_id"]) for s in list(qingjian.sent))
    return {step: n for step, n in counts.items() if n > 1}


def reported(tianwang, task_id: str) -> Counter:
    """How many distinct callback events 天网 accepted for the task, by status."""
    return Counter(e["status"] for e in list(tianwang.events.values()) if e.get("task_id") == task_id)


def reported_once(tianwang, task_id: str, *statuses: str) -> bool:
    return reported(tianwang, task_id) == Counter(statuses)


def history(system, task_id: str) -> list[dict]:
    system.use()
    return system.client.get(f"/api/task/{task_id}/events").get_json()["data"]["events"]


def lease_seconds(system) -> float:
    """The action lease the processes use: max(ACTION_LEASE_SECONDS, QINGJIAN_SEND_TIMEOUT + 5 + 1)."""
    system.use()
    return actions.lease().total_seconds()


def send_timeout(system) -> float:
    system.use()
    return runtime.current().settings.qingjian_send_timeout


def post_reply_task(system, customer: str, keyword: str = "好的", action: dict | None = None, **extra) -> str:
    task_id = uid()
    data = system.post_task(task_id=task_id, type="drill", customer={"id": customer},
                            trigger={"type": "customer_reply", "keyword": keyword}, action=action or FILE, **extra)
    assert data["status"] == "waiting", data
    return task_id


def post_event_task(system, customer: str, event: str, action: dict | None = None, **extra) -> str:
    """A custom_event task: it fires through POST /api/event, which needs no listener."""
    task_id = uid()
    data = system.post_task(task_id=task_id, type="drill", customer={"id": customer},
                            trigger={"type": "custom_event", "event": event}, action=action or FILE, **extra)
    assert data["status"] == "waiting", data
    return task_id


def api_event(system, event: str, customer: str) -> None:
    system.use()
    answer = system.client.post("/api/event", json={"event": event, "customer_id": customer})
    assert answer.status_code == 202, answer.get_json()


def restart_dead(system, kind: str) -> int:
    """Play the supervisor (systemd Restart=always): start again every `kind` process (worker, beat,
    listener) that died. Returns how many were restarted."""
    dead = [p for p in system.system.procs if p.name.startswith(kind) and not p.alive()]
    for proc in dead:
        proc.stop()  # already dead: closes its log
        system.system.procs.remove(proc)
        getattr(system.system, kind)(f"{kind}-{uid('r')}")
    return len(dead)


def inbound_row(system, msg_id: str):
    """The inbound_messages row of a msg_id (None until the listener recorded it)."""
    from sqlalchemy import select

    from app.infra.db import session_scope
    from app.models import InboundMessage

    system.use()
    with session_scope() as session:
        row = session.scalars(select(InboundMessage).where(InboundMessage.msg_id == msg_id)).all()
        session.expunge_all()
    assert len(row) <= 1, row
    return row[0] if row else None


class OwnRedis:
    """A redis-server of the drill's own, which it may stop, and start again empty at the same address."""

    def __init__(self):
        from devkit import stores

        self.stores = stores
        self.proc, self.url = stores.start_embedded_redis()
        self.port = int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def start_empty(self) -> None:
        self.proc, _ = self.stores.start_embedded_redis(self.port)


def system_on(tmp_path, redis_url: str, db: str | None = None, **kwargs):
    """A live system on these stores (a fresh SQLite file unless `db` names one)."""
    from devkit import stores
    from tests.conftest import start_live

    if db is None:
        db = f"sqlite:///{tmp_path / 'drill.db'}"
        stores.reset_database(db)
    return start_live(db, redis_url, tmp_path, **kwargs)
