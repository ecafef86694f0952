"""Configuration from the environment (CONTRACTS.md §5). One place reads os.environ."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"

DEFAULT_PAYMENT_KEYWORDS = ("已付款", "已支付", "拍下了", "付过了")
DEFAULT_ORDER_KEYWORDS = ("已下单", "下单了", "拍了")
DEFAULT_DISPATCH_REPLY_TEXT = "好的，已帮您安排设计师处理，请稍候"
DEFAULT_DISPATCH_OFFLINE_TEXT = "设计师暂时不在线，稍后为您安排"
DEFAULT_RATE_LIMIT_PER_KEY = "20000/minute"
DEFAULT_RATE_LIMIT_PER_IP = "60/minute"
DEFAULT_RATE_LIMIT_LOGIN = "10/minute;100/day"


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _float(env, name, default):
    raw = env.get(name)
    return float(raw) if raw not in (None, "") else default


def _flag(value: str | None, default: bool) -> bool:
    """on/off, true/false, yes/no, 1/0; unset or empty: `default`."""
    text = (value or "").strip().lower()
    if not text:
        return default
    if text in ("1", "on", "true", "yes"):
        return True
    if text in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"not an on/off value: {value!r}")
def _limit(env, name, default):
    """A rate limit: unset or empty is the default, `off` none at all."""
    raw = (env.get(name) or "").strip()
    if raw.lower() == "off":
        return None
    return raw or default


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    celery_broker_url: str
    celery_result_backend: str
    app_timezone: str = "Asia/Shanghai"
    api_keys: tuple[str, ...] = ()
    auth_enabled: bool = True
    callback_url: str | None = None
    callback_secret: str | None = None
    callback_max_age_hours: float = 24.0
    callback_retry_max_seconds: float = 600.0  # the longest wait between two attempts
    # A flush of the callback outbox: no post starts after its time budget, a post is given up after
    # its timeout, and at most `concurrency` posts are under way at once (app.services.callbacks).
    callback_flush_seconds: float = 20.0
    callback_timeout_seconds: float = 10.0
    callback_concurrency: int = 8
    qingjian_ws_url: str = "ws://127.0.0.1:9528"
    qingjian_default_acc_id: str | None = None
    qingjian_send_timeout: float = 10.0
    tuhui_base_url: str | None = None
    tuhui_api_key: str | None = field(default=None, repr=False)
    wecom_webhook_url: str | None = field(default=None, repr=False)
    dispatch_sticky_hours: float = 72.0
    dispatch_max_wait_minutes: float = 120.0
    # What the customer is told when a designer takes over, and when none is online yet.
    dispatch_reply_text: str = DEFAULT_DISPATCH_REPLY_TEXT
    dispatch_offline_text: str = DEFAULT_DISPATCH_OFFLINE_TEXT
    # How often a dispatch waiting for a designer checks again, and 图绘's request timeout.
    dispatch_wait_retry_seconds: float = 60.0
    tuhui_timeout: float = 10.0
    payment_keywords: tuple[str, ...] = DEFAULT_PAYMENT_KEYWORDS
    order_keywords: tuple[str, ...] = DEFAULT_ORDER_KEYWORDS
    # How long a worker's claim on a running task lasts before beat re-drives it.
    action_lease_seconds: float = 30.0
    # How long inbound messages are kept in SQL (the console, explain, re-driven matching read them), and
    # finished tasks with their history and settled callbacks (app.services.retention); 0 keeps them.
    message_retention_days: float = 7.0
    retention_days: float = 90.0
    redis_prefix: str = "tw:"
    # How many reverse proxies (nginx, a load balancer) stand in front of web and set X-Forwarded-*.
    trusted_proxies: int = 0
    # The operator console (/console): off without a secret; users "name:role:hash,..." (app.console.users).
    console_secret_key: str | None = field(default=None, repr=False)
    console_users: str = field(default="", repr=False)
    console_session_hours: float = 12.0
    console_cookie_secure: bool = True  # the session cookie only over HTTPS (off for plain-HTTP development)
    console_login_max_failures: int = 5  # per user name (an address: 4x) within 15 minutes, then refused
    # Request budgets (limits' notation, e.g. "100/second;5000/hour"; None: no limit), counted in Redis:
    # per API key on /api, per client address for /api requests without a valid key, and per client
    # address on the console's login.
    rate_limit_per_key: str | None = DEFAULT_RATE_LIMIT_PER_KEY
    rate_limit_per_ip: str | None = DEFAULT_RATE_LIMIT_PER_IP
    rate_limit_login: str | None = DEFAULT_RATE_LIMIT_LOGIN

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        redis_url = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        values = dict(
            database_url=env.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'tianwang.db'}",
            redis_url=redis_url,
            celery_broker_url=env.get("CELERY_BROKER_URL") or redis_url,
            celery_result_backend=env.get("CELERY_RESULT_BACKEND") or redis_url,
            app_timezone=env.get("APP_TIMEZONE") or "Asia/Shanghai",
            api_keys=_list(env.get("TIANWANG_API_KEYS")),
            auth_enabled=(env.get("TIANWANG_AUTH", "").strip().lower() != "off"),
            callback_url=env.get("TIANWANG_CALLBACK_URL") or None,
            callback_secret=env.get("TIANWANG_CALLBACK_SECRET") or None,
            callback_max_age_hours=_float(env, "CALLBACK_MAX_AGE_HOURS", 24.0),
            callback_retry_max_seconds=_float(env, "CALLBACK_RETRY_MAX_SECONDS", 600.0),
            callback_flush_seconds=_float(env, "CALLBACK_FLUSH_SECONDS", 20.0),
            callback_timeout_seconds=_float(env, "CALLBACK_TIMEOUT_SECONDS", 10.0),
            callback_concurrency=int(env.get("CALLBACK_CONCURRENCY") or 8),
            qingjian_ws_url=env.get("QINGJIAN_WS_URL") or "ws://127.0.0.1:9528",
            qingjian_default_acc_id=env.get("QINGJIAN_DEFAULT_ACC_ID") or None,
            qingjian_send_timeout=_float(env, "QINGJIAN_SEND_TIMEOUT", 10.0),
            tuhui_base_url=env.get("TUHUI_BASE_URL") or None,
            tuhui_api_key=env.get("TUHUI_API_KEY") or None,
            wecom_webhook_url=env.get("WECOM_WEBHOOK_URL") or None,
            dispatch_sticky_hours=_float(env, "DISPATCH_STICKY_HOURS", 72.0),
            dispatch_max_wait_minutes=_float(env, "DISPATCH_MAX_WAIT_MINUTES", 120.0),
            dispatch_reply_text=env.get("DISPATCH_REPLY_TEXT") or DEFAULT_DISPATCH_REPLY_TEXT,
            dispatch_offline_text=env.get("DISPATCH_OFFLINE_TEXT") or DEFAULT_DISPATCH_OFFLINE_TEXT,
            dispatch_wait_retry_seconds=_float(env, "DISPATCH_WAIT_RETRY_SECONDS", 60.0),
            tuhui_timeout=_float(env, "TUHUI_TIMEOUT", 10.0),
            action_lease_seconds=_float(env, "ACTION_LEASE_SECONDS", 30.0),
            message_retention_days=_float(env, "MESSAGE_RETENTION_DAYS", 7.0),
            retention_days=_float(env, "RETENTION_DAYS", 90.0),
            redis_prefix=env.get("REDIS_PREFIX") or "tw:",
            trusted_proxies=int(env.get("TRUSTED_PROXIES") or 0),
            console_secret_key=env.get("CONSOLE_SECRET_KEY") or None,
            console_users=env.get("CONSOLE_USERS") or "",
            console_session_hours=_float(env, "CONSOLE_SESSION_HOURS", 12.0),
            console_cookie_secure=_flag(env.get("CONSOLE_COOKIE_SECURE"), True),
            console_login_max_failures=int(env.get("CONSOLE_LOGIN_MAX_FAILURES") or 5),
            rate_limit_per_key=_limit(env, "RATE_LIMIT_PER_KEY", DEFAULT_RATE_LIMIT_PER_KEY),
            rate_limit_per_ip=_limit(env, "RATE_LIMIT_PER_IP", DEFAULT_RATE_LIMIT_PER_IP),
            rate_limit_login=_limit(env, "RATE_LIMIT_LOGIN", DEFAULT_RATE_LIMIT_LOGIN),
        )
        values.update(overrides)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def check(self) -> None:
        """Refuse to start in a state the contract forbids."""
        if self.auth_enabled and not self.api_keys:
            raise RuntimeError(
                "TIANWANG_API_KEYS is empty: set intake keys, or TIANWANG_AUTH=off to run without auth"
            )
        if self.callback_concurrency < 1 or min(self.callback_flush_seconds, self.callback_timeout_seconds) <= 0:
            raise RuntimeError("CALLBACK_CONCURRENCY must be at least 1, CALLBACK_FLUSH_SECONDS and "
                               "CALLBACK_TIMEOUT_SECONDS above 0")
        for name in ("RETENTION_DAYS", "MESSAGE_RETENTION_DAYS"):
            if getattr(self, name.lower()) < 0:
                raise RuntimeError(f"{name} must be a number of days (0 keeps everything)")
        from limits import parse_many

        for name in ("RATE_LIMIT_PER_KEY", "RATE_LIMIT_PER_IP", "RATE_LIMIT_LOGIN"):
            value = getattr(self, name.lower())
            try:
                if value is not None and not parse_many(value):
                    raise ValueError(value)
            except ValueError:
                raise RuntimeError(f"{name}={value!r} is not a rate limit: write e.g. '100/second', "
                                   "'20000/minute;500000/day', or 'off'") from None
