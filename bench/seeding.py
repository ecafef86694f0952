"""How the benchmarks put tasks into the system under test: through the app's own API in this process
(`create_tasks`: schema, intake service, SQL, Redis registration, one request per task), or in bulk
(`bulk_tasks`: the same rows and index entries, without a round trip per task)."""
from __future__ import annotations

import time

from tqdm import tqdm

from devkit import processes


def in_process_app(env: dict):
    """The Flask app (and Celery producer) of the system under test, inside this process."""
    from app import create_app
    from app.config import Settings

    app = create_app(Settings.from_env(env))
    celery_app = app.extensions["celery"]
    celery_app.set_current()
    celery_app.set_default()
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = processes.API_KEY
    return app, client


def create_tasks(client, bodies: list[dict], desc: str, threads: int = 4) -> dict:
    """POST every body to /api/task/receive through the app (in-process); returns timing and errors."""
    from concurrent.futures import ThreadPoolExecutor

    errors: list = []
    start = time.perf_counter()

    def post(body):
        answer = client.post("/api/task/receive", json=body)
        if answer.status_code != 200:
            errors.append((body["task_id"], answer.status_code, answer.get_data(as_text=True)[:200]))

    with ThreadPoolExecutor(threads) as pool, tqdm(total=len(bodies), desc=desc, leave=False,
                                                   unit="task", dynamic_ncols=True) as bar:
        for _ in pool.map(post, bodies):
            bar.update()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} task(s) refused by intake, e.g. {errors[:3]}")
    return {"tasks": len(bodies), "seconds": round(elapsed, 2), "per_second": round(len(bodies) / elapsed, 1)}


def bulk_tasks(bodies: list[dict], desc: str) -> dict:
    """Store tasks as `waiting` in one transaction, built by the app's own schema and intake constructor
    (TaskReceiveSchema, intake._new_task), and register them in the Redis index (registration.spec_of,
    Registry.register): what POST /api/task/receive leaves behind, minus its per-request round trips."""
    from app import runtime
    from app.infra.db import session_scope
    from app.schemas import TaskReceiveSchema
    from app.services import intake, registration

    start = time.perf_counter()
    rt = runtime.current()
    schema = TaskReceiveSchema()
    tasks = []
    for body in tqdm(bodies, desc=desc, leave=False, unit="task", dynamic_ncols=True):
        task = intake._new_task(schema.load(body), body, intake.body_hash(body), rt.settings)
        task.status = "waiting"
        tasks.append(task)
    with session_scope() as session:
        session.add_all(tasks)
    pipe = rt.redis.pipeline(transaction=False)
    from app.registry import Registry

    class _One:  # Registry.register's pipeline, folded into ours
        def pipeline(self, transaction=True):
            return self

        def __getattr__(self, name):
            return getattr(pipe, name)

        def execute(self):
            return None

    registry = Registry(_One(), rt.keys)  # type: ignore[arg-type]
    for task in tasks:
        registry.register(registration.spec_of(task))
    pipe.execute()
    elapsed = time.perf_counter() - start
    return {"tasks": len(bodies), "seconds": round(elapsed, 2), "per_second": round(len(bodies) / elapsed, 1),
            "how": "bulk: app schema + intake._new_task, one INSERT batch, Registry.register"}
