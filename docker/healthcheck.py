"""Is this container's process healthy? `python docker/healthcheck.py web|worker|beat|listener|flower`
(compose's healthcheck of each service). Exit 0 if so, else 1 with one line saying why.

web and flower answer HTTP; a worker answers a Celery ping addressed to it; the listener and beat are
judged by their heartbeats in Redis (the listener's while it holds the 轻简 socket; beat's is stamped by
the tick it sends, so it also needs a worker to run that tick).
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project: run as a script from anywhere

import urllib.request

from app.infra.keys import Keys  # noqa: E402  (names the heartbeat keys, as the processes do)

HEARTBEAT_TTL = 15  # app/infra/heartbeat.py: a heartbeat key lives this long unless refreshed


def http_ok(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except OSError as exc:
        return f"{url}: {exc}"


def worker_answers(name: str = "celery") -> str | None:
    """The Celery worker node `<name>@<this host>` answers a ping (the Procfile names its sweeper's node)."""
    from celery import Celery

    app = Celery("healthcheck", broker=os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL"))
    app.config_from_object("celeryconfig")
    node = f"{name}@{socket.gethostname()}"
    replies = app.control.ping(destination=[node], timeout=5)
    return None if replies else f"{node} did not answer a ping within 5 s"


def heartbeat_fresh(name: str) -> str | None:
    import redis

    keys = Keys(os.environ.get("REDIS_PREFIX") or "tw:")
    client = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0", socket_timeout=3)
    try:
        found = client.exists(keys.heartbeat(name))
    except redis.RedisError as exc:
        return f"Redis: {exc}"
    return None if found else f"no {name} heartbeat in the last {HEARTBEAT_TTL} s"


CHECKS = {
    "web": lambda: http_ok(f"http://127.0.0.1:{os.environ.get('PORT') or 8000}/api/health"),
    "flower": lambda: http_ok(f"http://127.0.0.1:{os.environ.get('FLOWER_PORT') or 5555}/healthcheck"),
    "worker": worker_answers,
    "sweeper": lambda: worker_answers("sweeper"),
    "beat": lambda: heartbeat_fresh("beat"),
    "listener": lambda: heartbeat_fresh("listener"),
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: python docker/healthcheck.py {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    problem = CHECKS[argv[0]]()
    if problem:
        print(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # celeryconfig, from the project's root (the image's WORKDIR)
    sys.exit(main(sys.argv[1:]))
