"""A private PostgreSQL-backed system for the standalone drills (`bench.scale_out`, `bench.soak`): its own
redis-server and database, the fakes, and a `devkit.processes.System`, all stopped and dropped at the end."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import RESULTS, quiet_fakes
from devkit import processes, stores


@dataclass
class PrivateSystem:
    system: "processes.System"
    qingjian: object
    tianwang: object
    db_url: str
    redis_pid: int


@contextmanager
def private_system(name: str, report: dict, **env):
    """Its own redis-server and PostgreSQL database, the 轻简 and 天网 fakes, and a `processes.System`
    (no processes yet); on the way out everything is stopped and dropped, and `report` is written to
    bench/results/<name>.json whatever happened."""
    import tempfile

    from devkit.fakes.qingjian import FakeQingjian
    from devkit.fakes.tianwang import FakeTianwang

    quiet_fakes()
    if not stores.postgres_available():
        raise SystemExit(f"{name} needs PostgreSQL at {stores.PG_URL}")
    redis_proc, redis_url_ = stores.start_embedded_redis()
    db_url = stores.create_private_database()
    stores.migrate(db_url)
    qingjian, tianwang = FakeQingjian().start(), FakeTianwang().start()
    system = processes.System(db_url, f"{redis_url_}/0", Path(tempfile.mkdtemp(prefix=f"{name}_")),
                            QINGJIAN_WS_URL=qingjian.url, TIANWANG_CALLBACK_URL=tianwang.url,
                            LOG_LEVEL="WARNING", **env)
    try:
        yield PrivateSystem(system, qingjian, tianwang, db_url, redis_proc.pid)
    finally:
        system.stop()
        qingjian.stop()
        tianwang.stop()
        stores.drop_database(db_url)
        redis_proc.terminate()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))


def web_healthy(base: str) -> bool:
    import requests

    try:
        return requests.get(f"{base}/api/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
