"""Legacy-shaped SQLite databases for the import tests and bench: the legacy bridge's `tasks` table as
its documents give it (seed 000, 部署文档 → 数据库; seed 001, 数据库表结构 has no specified_customer_*)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_000 = """
CREATE TABLE tasks (
task_id TEXT PRIMARY KEY,
specified_customer_id TEXT,
specified_customer_name TEXT,
type TEXT NOT NULL,
customer_name TEXT,
customer_id TEXT,
trigger_type TEXT,
trigger_keyword TEXT,
trigger_keywords TEXT,
action_type TEXT,
action_file_url TEXT,
action_message TEXT,
priority TEXT DEFAULT 'normal',
timeout_hours INTEGER DEFAULT 24,
status TEXT DEFAULT 'pending',
retry_count INTEGER DEFAULT 0,
max_retry INTEGER DEFAULT 3,
created_at TEXT,
created_by TEXT,
triggered_at TEXT,
completed_at TEXT,
error_message TEXT,
result TEXT
);
"""

# seed 001's table: the same columns without the two specified_customer_* ones
SCHEMA_001 = "\n".join(line for line in SCHEMA_000.splitlines() if not line.startswith("specified_customer_"))


def create(path: Path, rows: list[dict], schema: str = SCHEMA_000) -> Path:
    """A legacy database at `path` holding `rows` (columns left out take the table's defaults)."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(schema)
        for row in rows:
            names = ", ".join(row)
            conn.execute(f"INSERT INTO tasks ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        conn.commit()
    finally:
        conn.close()
    return path


def row(task_id: str, **columns) -> dict:
    """A legacy row as the legacy bridge wrote it: a pending customer_reply sending a text, made now."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    base = {
        "task_id": task_id, "type": "send_file_after_reply", "customer_id": None, "customer_name": None,
        "trigger_type": "customer_reply", "trigger_keyword": "好的", "action_type": "send_message",
        "action_message": "这是您要的文件", "status": "pending",
        # the legacy bridge wrote datetime.now().isoformat(): local (Asia/Shanghai) time, no offset
        "created_at": datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None).isoformat(),
        "created_by": "设计师 lz",
    }
    base.update(columns)
    return base
