"""Flower, the Celery dashboard: `python -m workers.flower` (the Procfile's flower line).

With FLOWER_BASIC_AUTH (`user:password`) it listens on every interface behind basic auth; without
it, only on 127.0.0.1, so an unauthenticated dashboard is never reachable from outside.
"""
import os
import sys


def command(env: dict) -> list[str]:
    auth = env.get("FLOWER_BASIC_AUTH", "").strip()
    args = ["celery", "-A", "workers", "flower", f"--port={env.get('FLOWER_PORT', '5555')}",
            f"--address={env.get('FLOWER_ADDRESS') or ('0.0.0.0' if auth else '127.0.0.1')}"]
    if auth:
        args.append(f"--basic-auth={auth}")
    return args


if __name__ == "__main__":
    args = command(dict(os.environ))
    bindir = os.path.dirname(sys.executable)
    os.execv(os.path.join(bindir, "celery"), args)
