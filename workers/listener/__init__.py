"""The 轻简 listener: `python -m workers.listener` (one active per 轻简 URL; others stand by).

It owns the WebSocket. Inbound customer events are taken in batches (whatever arrived together):
de-duplicated by msg_id per 轻简, remembered for lookback, placed in their customers' lanes, recorded in
SQL and pushed to the `match` inbox that workers drain in batches (`inbound`; app.infra.inbox). Sends
come from the Redis stream workers write, each taken (never one given up on) and sent; 轻简's answers go
back by req_id to the `answers` inbox (`outbound`).
"""
from __future__ import annotations

import logging
import os
import random
import select
import socket
import threading
import time

import redis
import websocket

from app import runtime
from app.clients.qingjian import PING, FrameError, SendChannel, parse_inbound
from app.config import Settings
from app.domain import backoff
from app.infra import heartbeat
from app.infra.locks import RedisLock
from app.services.inbound import source_of
from workers.listener.inbound import InboundBatch
from workers.listener.outbound import Sender

log = logging.getLogger("workers.listener")

LOCK_TTL_MS = 5000  # a dead leader's lock lapses within this; a standby polls every second
RENEW_EVERY = 2.0
PING_EVERY = 10.0
DEAD_AFTER = 30.0  # no frame at all for this long: the peer is gone, reconnect
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
BATCH_MAX = 200  # frames read before a batch is handed over, however fast they come


class Listener:
    def __init__(self, settings: Settings):
        rt = runtime.current()
        self.settings = settings
        self.r, self.keys = rt.redis, rt.keys
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        # One active listener per 轻简 URL: a dead leader's lock lapses and a standby takes it.
        self.leader = RedisLock(self.r, self.keys.lock(f"listener:{settings.qingjian_ws_url}"), LOCK_TTL_MS)
        self.stopping = threading.Event()
        self.ws: websocket.WebSocket | None = None
        self.last_frame = 0.0
        self._count = Counters(self.r, self.keys.stats("listener"))
        self.channel = SendChannel(self.r, self.keys)
        self.inbound = InboundBatch(rt.registry, source_of(settings.qingjian_ws_url),
                                    settings.qingjian_default_acc_id, self._count)
        self.sender = Sender(self.channel, self.consumer, settings.qingjian_send_timeout, self._count)
        self.answers: list[tuple[str, bool, str | None]] = []

    # -- life cycle --------------------------------------------------------------------------
    def run(self) -> None:
        log.info("listener %s standing by for %s", self.consumer, self.settings.qingjian_ws_url)
        while not self.stopping.is_set():
            try:
                if self.leader.acquire():
                    log.info("listener %s is now the active listener", self.consumer, extra={"event": "leader"})
                    self._lead()
            except redis.RedisError as exc:
                log.warning("Redis unavailable (%s); retrying", exc)
            self.stopping.wait(1.0)
        log.info("listener %s stopped", self.consumer)

    def stop(self, *_):
        log.info("listener %s stopping: no new reads, flushing in-flight sends", self.consumer)
        self.stopping.set()

    def _lead(self) -> None:
        self.channel.ensure_group()
        attempt = 0
        try:
            while not self.stopping.is_set():
                try:
                    self._connect()
                    attempt = 0
                    self._serve()
                except (OSError, websocket.WebSocketException) as exc:
                    self._count("reconnects")
                    log.warning("轻简 connection lost: %s", exc, extra={"event": "disconnected"})
                except LostLeadership:
                    log.warning("listener %s lost the lock; standing by", self.consumer)
                    return
                finally:
                    self._close()
                if self.stopping.is_set():
                    break
                delay = backoff.exponential(attempt, random.random(), first=BACKOFF_FIRST, cap=BACKOFF_MAX)
                attempt += 1
                log.info("reconnecting to 轻简 in %.1fs", delay)
                self._wait_renewing(delay)
        finally:
            self.leader.release()

    def _wait_renewing(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < end:
            if not self.leader.renew():
                raise LostLeadership()
            self.stopping.wait(min(RENEW_EVERY / 2, end - time.monotonic()))

    def _connect(self) -> None:
        self.ws = websocket.create_connection(self.settings.qingjian_ws_url, timeout=5)
        self.ws.settimeout(1.0)
        self.sender.ws = self.ws
        self.last_frame = time.monotonic()
        log.info("connected to 轻简 at %s", self.settings.qingjian_ws_url, extra={"event": "connected"})
        self._set_state(1)
        self.sender.resend_unacknowledged()

    def _close(self) -> None:
        self._set_state(0)
        self._flush()  # what was read before the connection went is still handed over
        self._count.flush()
        if self.ws is not None:
            try:
                self.ws.close(timeout=1)
            except Exception:
                pass
            self.ws = self.sender.ws = None

    # -- the connection ----------------------------------------------------------------------
    def _serve(self) -> None:
        broken = threading.Event()
        pump = threading.Thread(target=self.sender.pump, args=(broken, self.stopping), name="listener-sends",
                                daemon=True)
        pump.start()
        next_renew = next_ping = 0.0
        try:
            while not broken.is_set():
                now = time.monotonic()
                if now >= next_renew:
                    if not self.leader.renew():
                        raise LostLeadership()
                    heartbeat.beat(self.r, self.keys, "listener")
                    self.sender.expire()
                    self._count.flush()
                    next_renew = now + RENEW_EVERY
                if now >= next_ping:
                    self.ws.send(PING)
                    next_ping = now + PING_EVERY
                if now - self.last_frame > DEAD_AFTER:
                    raise websocket.WebSocketTimeoutException(f"no frame from 轻简 for {DEAD_AFTER:.0f}s")
                if self.stopping.is_set() and not self.sender.pending():
                    return
                if self._read_burst():
                    self._flush()
            raise websocket.WebSocketConnectionClosedException("send failed")
        finally:
            broken.set()
            pump.join(timeout=3)

    def _read_burst(self) -> bool:
        """Read one frame (waiting up to a second), then whatever else has already arrived; True if
        anything was read. What arrives together is handed over together."""
        for read in range(BATCH_MAX):
            try:
                text = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                return read > 0
            if text in ("", None):
                raise websocket.WebSocketConnectionClosedException("轻简 closed the connection")
            self.last_frame = time.monotonic()
            self._on_frame(text)
            if not select.select([self.ws.sock], [], [], 0)[0]:
                return True
        return True

    def _flush(self) -> None:
        self.inbound.flush()
        answers, self.answers = self.answers, []
        self.sender.answered(answers)

    def _on_frame(self, text) -> None:
        try:
            event, data = parse_inbound(text)
        except FrameError as exc:
            self._count("malformed")
            log.warning("skipped a malformed frame from 轻简: %s", exc, extra={"event": "malformed"})
            return
        if event in ("message", "payment", "order"):
            self.inbound.add(event, data)
        elif event == "send_result":
            self._on_send_result(data)
        elif event != "pong":
            self._count("unknown")
            log.warning("skipped an unknown 轻简 event %r", event, extra={"event": "unknown_event"})

    def _on_send_result(self, data: dict) -> None:
        req_id = data.get("req_id")
        if not isinstance(req_id, str):
            self._count("malformed")
            return
        ok = bool(data.get("ok"))
        self.answers.append((req_id, ok, None if ok else str(data.get("error") or "refused")))
        self._count("send_ok" if ok else "send_failed")

    # -- bookkeeping ------------------------------------------------------------------------
    def _set_state(self, connected: int) -> None:
        try:
            self.r.hset(self.keys.stats("listener"), "connected", connected)
        except redis.RedisError:
            pass


class Counters:
    """The listener's counters (stats:listener, read by /metrics), added up in memory and written every
    RENEW_EVERY seconds with the heartbeat (and when the connection closes): at a steady rate, writing
    them with each batch cost a Redis round trip per message."""

    def __init__(self, client: redis.Redis, key: str):
        self.r, self.key = client, key
        self.pending: dict[str, int] = {}
        self.lock = threading.Lock()  # the send thread counts too

    def __call__(self, what: str, amount: int = 1) -> None:
        with self.lock:
            self.pending[what] = self.pending.get(what, 0) + amount

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
        if not pending:
            return
        try:
            pipe = self.r.pipeline(transaction=False)
            for what, amount in pending.items():
                pipe.hincrby(self.key, what, amount)
            pipe.execute()
        except redis.RedisError:
            pass  # a metrics hiccup never stops the listener


class LostLeadership(Exception):
    pass
