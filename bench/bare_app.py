"""The reference for the intake API: a bare Flask + SQLAlchemy endpoint that inserts the posted JSON.

    gunicorn bench.bare_app:app   (DATABASE_URL as for the app; same engine settings: app.infra.db.make_engine)

No validation beyond "a JSON object with a task_id", no Redis, no history row: one INSERT per request.
"""
from __future__ import annotations

import os

from flask import Flask, jsonify, request
from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, insert

from app.infra.db import make_engine
from app.infra.timeutil import utcnow

metadata = MetaData()
bare_tasks = Table(
    "bench_bare_tasks", metadata,
    Column("task_id", String(128), primary_key=True),
    Column("body", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

app = Flask(__name__)
_engine = None


def engine():
    global _engine
    if _engine is None:
        _engine = make_engine(os.environ["DATABASE_URL"])
    return _engine


@app.get("/bare/health")
def health():
    return jsonify({"code": 200, "message": "OK", "data": None})


@app.post("/bare/receive")
def receive():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("task_id"), str):
        return jsonify({"code": 400, "message": "bad body", "data": None}), 400
    with engine().begin() as conn:
        conn.execute(insert(bare_tasks).values(task_id=body["task_id"], body=body, created_at=utcnow()))
    return jsonify({"code": 200, "message": "任务接收成功", "data": {"task_id": body["task_id"], "status": "waiting"}})


def reset_table(url: str) -> None:
    """Drop and create bench_bare_tasks (run by the benchmark before gunicorn starts)."""
    eng = make_engine(url)
    metadata.drop_all(eng)
    metadata.create_all(eng)
    eng.dispose()
