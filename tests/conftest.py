"""Shared fixtures. Redis DB numbers keep the suites apart: 6 the Redis hand-off tests, 7 the database
outage drill, 8 API tests, 9 the shared live system, 10-15 systems a single test builds for itself
(kill drills)."""
from __future__ import annotations

import uuid

import pytest
import redis

from app import create_app
from app.config import Settings
from devkit import processes, stores
from devkit.fakes.qingjian import FakeQingjian
from devkit.fakes.tianwang import FakeTianwang
from devkit.fakes.tuhui import FakeTuhui
from devkit.fakes.wecom import FakeWecom

CALLBACK_SECRET = "test-callback-secret"
TUHUI_API_KEY = "test-tuhui-key-7f3a9c"
DESIGNERS = ["橘子", "婷婷"]


@pytest.fixture(scope="session")
def redis_base():
    """A redis-server of this session's own (TEST_REDIS_URL overrides)."""
    import os

    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"].rstrip("/")
        return
    proc, url = stores.start_embedded_redis()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'api.db'}"
    stores.reset_database(url)
    return url


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database of this session's own on the machine's server (skipped if none answers)."""
    if not stores.postgres_available():
        pytest.skip("PostgreSQL does not answer at " + stores.PG_URL)
    url = stores.create_private_database()
    stores.migrate(url)
    yield url
    stores.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """Each API test runs against SQLite and against the machine's PostgreSQL (when it answers)."""
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param])


def make_settings(db_url: str, redis_url: str, **overrides) -> Settings:
    env = processes.base_env(db_url, redis_url)
    return Settings.from_env(env, **overrides)


@pytest.fixture
def app(db_url, redis_base):
    redis_url = f"{redis_base}/8"
    stores.truncate(db_url)
    redis.Redis.from_url(redis_url).flushdb()
    application = create_app(make_settings(db_url, redis_url))
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    test_client = app.test_client()
    test_client.environ_base["HTTP_X_API_KEY"] = processes.API_KEY
    return test_client


@pytest.fixture
def rdb(app):
    from app import runtime

    return runtime.current().redis


def uid(prefix: str = "T") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# -- a live system: fakes, worker, beat, listener (shared by the end-to-end tests) ----------------

@pytest.fixture(scope="session")
def live(tmp_path_factory, redis_base):
    # A database of its own, not `postgres_url`: tests/api and tests/console truncate that one and write
    # their own callback rows, which this system's beat and callback worker would otherwise flush first.
    private = stores.postgres_available()
    if private:
        db = stores.create_private_database()
        stores.migrate(db)
    else:
        db = f"sqlite:///{tmp_path_factory.mktemp('live') / 'live.db'}"
        stores.reset_database(db)
    live_system = start_live(db, f"{redis_base}/9", tmp_path_factory.mktemp("logs"), dispatch_fakes=True,
                             TUHUI_TIMEOUT="2", DISPATCH_WAIT_RETRY_SECONDS="1")
    yield live_system
    live_system.stop()
    if private:
        stores.drop_database(db)


@pytest.fixture(autouse=True)
def _shared_fakes_reset_after_each_test(request):
    """A control one test sets on the shared system's fakes never reaches the next test."""
    yield
    if "live" in request.fixturenames:
        request.getfixturevalue("live").reset_fakes()


def start_live(db: str, redis_url: str, log_dir, *, workers: int = 1, beats: int = 1, listeners: int = 1,
               dispatch_fakes: bool = False, **env) -> "LiveSystem":
    """Fakes, then worker, beat and listener processes against `db` and `redis_url` (flushed first)."""
    redis.Redis.from_url(redis_url).flushdb()
    qingjian = FakeQingjian().start()
    tianwang = FakeTianwang(secret=CALLBACK_SECRET).start()
    tuhui = FakeTuhui(api_key=TUHUI_API_KEY, designers=DESIGNERS).start() if dispatch_fakes else None
    wecom = FakeWecom().start() if dispatch_fakes else None
    env = {"QINGJIAN_WS_URL": qingjian.url, "TIANWANG_CALLBACK_URL": tianwang.url,
           "TIANWANG_CALLBACK_SECRET": CALLBACK_SECRET, **env}
    if dispatch_fakes:
        env.update(TUHUI_BASE_URL=tuhui.url, TUHUI_API_KEY=TUHUI_API_KEY, WECOM_WEBHOOK_URL=wecom.url)
    system = processes.System(db, redis_url, log_dir, **env)
    for i in range(workers):
        system.worker(f"worker{i}")
    for i in range(beats):
        system.beat(f"beat{i}")
    for i in range(listeners):
        system.listener(f"listener{i}")
    if listeners:
        assert qingjian.wait_for_client(30), system.dump_logs()
    app = create_app(Settings.from_env(system.env))
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = processes.API_KEY
    return LiveSystem(system, qingjian, tianwang, app, client, tuhui=tuhui, wecom=wecom)


class LiveSystem:
    def __init__(self, system, qingjian, tianwang, app, client, tuhui=None, wecom=None):
        self.system, self.qingjian, self.tianwang, self.app, self.client = system, qingjian, tianwang, app, client
        self.tuhui, self.wecom = tuhui, wecom  # FakeTuhui and FakeWecom, where the system has them

    @property
    def fakes(self) -> list:
        return [f for f in (self.qingjian, self.tianwang, self.tuhui, self.wecom) if f is not None]

    def stop(self) -> None:
        self.system.stop()
        for fake in self.fakes:
            fake.stop()

    def reset_fakes(self) -> None:
        """Undo the controls a test set on the fakes (one-shot failures, holds, outages)."""
        for fake in self.fakes:
            fake.reset_controls()
            if getattr(fake, "is_up", True) is False:
                fake.up()

    def use(self):
        """Point this process's runtime (Redis, database) at the live system again."""
        from app import runtime

        runtime.configure(self.app.config["SETTINGS"])
        # Enqueues from this process (catch-up firing, /api/event, callbacks) use Celery's current
        # app: the most recently created one unless told otherwise, e.g. an isolated system's.
        celery_app = self.app.extensions["celery"]
        celery_app.set_current()
        celery_app.set_default()
        return self

    def post_task(self, **body) -> dict:
        self.use()
        answer = self.client.post("/api/task/receive", json=body)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["data"]

    def status(self, task_id: str) -> dict:
        self.use()
        return self.client.get(f"/api/task/status/{task_id}").get_json()["data"]

    def wait_for_sweeps(self, after: float, sweeps: int = 3, timeout: float = 30) -> None:
        """Until beat's sweep (maintenance.tick, every 0.5 s) has started `sweeps` times since `after`
        (a time.time()): sweeps never overlap, so all but the last of them have also finished."""
        from app import runtime

        self.use()
        rt = runtime.current()
        started: set[float] = set()

        def swept() -> bool:
            raw = rt.redis.get(rt.keys.heartbeat("beat"))  # written as each sweep starts
            if raw is not None and float(raw) > after:
                started.add(float(raw))
            return len(started) >= sweeps

        stores.wait_until(swept, timeout, 0.05, f"{sweeps} beat sweeps after {after:.3f}")

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 20) -> dict:
        def reached():
            data = self.status(task_id)
            return data if data["status"] in statuses else None

        try:
            return stores.wait_until(reached, timeout, 0.1, f"{task_id} to become {statuses}")
        except AssertionError:
            raise AssertionError(f"{task_id} is {self.status(task_id)['status']}, not {statuses}\n"
                                 + self.system.dump_logs())


# -- a system of its own, for drills that kill processes or flush Redis ----------------------------

_isolated_dbs = iter(list(range(10, 16)) * 100)


@pytest.fixture
def isolated(tmp_path, redis_base):
    """Build a private system: `isolated(workers=1, beats=1, listeners=1, **env)` -> LiveSystem.

    Own SQLite file, own Redis DB (10-15), own fakes; everything is stopped after the test.
    """
    built = []

    def build(workers: int = 1, beats: int = 1, listeners: int = 1, **env) -> LiveSystem:
        db = f"sqlite:///{tmp_path / f'iso{len(built)}.db'}"
        stores.reset_database(db)
        live_system = start_live(db, f"{redis_base}/{next(_isolated_dbs)}", tmp_path, workers=workers,
                                 beats=beats, listeners=listeners, **env)
        built.append(live_system)
        return live_system

    yield build
    for live_system in built:
        live_system.stop()
