"""The 轻简 listener: `python -m workers.listener` (one active per 轻简 URL; others stand by).

It owns the WebSocket. Inbound customer events are de-duplicated by msg_id, remembered for
lookback, and handed to Celery (`messages.match`); outbound frames come from the Redis stream that
workers write (app.clients.qingjian.SendChannel), and each `send_result` is reported back by req_id.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time

import redis
import websocket

from app import create_app, queueing, runtime
from app.clients.qingjian import PING, FrameError, SendChannel, parse_inbound
from app.config import Settings
from app.domain import backoff
from app.domain.triggers import InboundEvent
from app.infra import heartbeat
from app.infra.locks import RedisLock
from app.infra.logs import setup_logging

log = logging.getLogger("workers.listener")

LOCK_TTL_MS = 5000  # a dead leader's lock lapses within this; a standby polls every second
RENEW_EVERY = 2.0
PING_EVERY = 10.0
DEAD_AFTER = 30.0  # no frame at all for this long: the peer is gone, reconnect
SEEN_TTL = 24 * 3600
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0



class Listener:
    def __init__(self, settings: Settings):
        rt = runtime.current()
        self.settings = settings
        self.r = rt.redis
        self.registry = rt.registry
        self.keys = rt.keys
        self.channel = SendChannel(self.r, self.keys)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        # One active listener per 轻简 URL: a dead leader's lock lapses and a standby takes it.
        self.leader = RedisLock(self.r, self.keys.lock(f"listener:{settings.qingjian_ws_url}"), LOCK_TTL_MS)
        self.stopping = threading.Event()
        self.ws: websocket.WebSocket | None = None
        self.in_flight: dict[str, tuple[str, float]] = {}  # req_id -> (stream entry id, sent at)
        self.lock = threading.Lock()
        self.last_frame = 0.0

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
        self.last_frame = time.monotonic()
        log.info("connected to 轻简 at %s", self.settings.qingjian_ws_url, extra={"event": "connected"})
        self._set_state(1)
        self._resend_unacknowledged()

    def _close(self) -> None:
        self._set_state(0)
        if self.ws is not None:
            try:
                self.ws.close(timeout=1)
            except Exception:
                pass
            self.ws = None

    # -- the connection ----------------------------------------------------------------------
    def _serve(self) -> None:
        sender = threading.Thread(target=self._pump_sends, name="listener-sends", daemon=True)
        broken = threading.Event()
        self._broken = broken
        sender.start()
        next_renew = next_ping = 0.0
        try:
            while not broken.is_set():
                now = time.monotonic()
                if now >= next_renew:
                    if not self.leader.renew():
                        raise LostLeadership()
                    heartbeat.beat(self.r, self.keys, "listener")
                    self._expire_in_flight()
                    next_renew = now + RENEW_EVERY
                if now >= next_ping:
                    self.ws.send(PING)
                    next_ping = now + PING_EVERY
                if now - self.last_frame > DEAD_AFTER:
                    raise websocket.WebSocketTimeoutException(f"no frame from 轻简 for {DEAD_AFTER:.0f}s")
                if self.stopping.is_set() and not self.in_flight:
                    return
                try:
                    text = self.ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if text in ("", None):
                    raise websocket.WebSocketConnectionClosedException("轻简 closed the connection")
                self.last_frame = time.monotonic()
                self._on_frame(text)
            raise websocket.WebSocketConnectionClosedException("send failed")
        finally:
            broken.set()
            sender.join(timeout=3)

    def _on_frame(self, text) -> None:
        try:
            event, data = parse_inbound(text)
        except FrameError as exc:
            self._count("malformed")
            log.warning("skipped a malformed frame from 轻简: %s", exc, extra={"event": "malformed"})
            return
        if event in ("message", "payment", "order"):
            self._on_customer_event(event, data)
        elif event == "send_result":
            self._on_send_result(data)
        elif event == "pong":
            pass
        else:
            self._count("unknown")
            log.warning("skipped an unknown 轻简 event %r", event, extra={"event": "unknown_event"})

    def _on_customer_event(self, kind: str, data: dict) -> None:
        try:
            event = InboundEvent.from_wire(kind, data, received_at=time.time())
        except ValueError as exc:
            self._count("malformed")
            log.warning("skipped a %s event: %s", kind, exc, extra={"event": "malformed"})
            return
        seen_key = self.keys.seen(event.msg_id) if event.msg_id else None
        if not self.registry.remember(event, seen_key, SEEN_TTL):
            self._count("duplicates")
            return
        try:
            queueing.enqueue_match(event.as_dict())
        except Exception:
            if seen_key:  # not handed on: let a redelivery of it through
                self.r.delete(seen_key)
            raise
        self._count("received")

    def _on_send_result(self, data: dict) -> None:
        req_id = data.get("req_id")
        if not isinstance(req_id, str):
            self._count("malformed")
            return
        ok = bool(data.get("ok"))
        self.channel.report(req_id, ok, None if ok else str(data.get("error") or "refused"))
        self._count("send_ok" if ok else "send_failed")
        with self.lock:
            entry = self.in_flight.pop(req_id, None)
        if entry:
            self.channel.ack(entry[0])

    # -- outbound ---------------------------------------------------------------------------
    def _pump_sends(self) -> None:
        broken = self._broken
        while not broken.is_set():
            if self.stopping.is_set():
                return  # graceful stop: no new sends; in-flight ones are still answered
            try:
                entries = self.channel.read(self.consumer, block_ms=500)
            except redis.RedisError as exc:
                log.warning("cannot read the send stream: %s", exc)
                if "NOGROUP" in str(exc):  # Redis restarted empty: the stream and its group are gone
                    self._recreate_group()
                else:
                    time.sleep(1)
                continue
            for entry_id, fields in entries:
                if not self._send_entry(entry_id, fields):
                    broken.set()
                    return

    def _recreate_group(self) -> None:
        try:
            self.channel.ensure_group()
        except redis.RedisError:
            time.sleep(1)

    def _send_entry(self, entry_id: str, fields: dict) -> bool:
        req_id = fields.get("req_id", "")
        try:
            with self.lock:
                self.in_flight[req_id] = (entry_id, time.time())
            self.ws.send(fields["frame"])
            self._count("sends")
            return True
        except (OSError, websocket.WebSocketException, AttributeError) as exc:
            log.warning("send %s not delivered (%s); it stays pending for the next connection", req_id, exc)
            return False

    def _resend_unacknowledged(self) -> None:
        """Entries read but never answered (by us before a reconnect, or by a dead listener)."""
        timeout = self.settings.qingjian_send_timeout
        for entry_id, fields in self.channel.reclaim(self.consumer):
            age = time.time() - float(fields.get("at", 0))
            if age > timeout or self.channel.result(fields.get("req_id", "")) is not None:
                self.channel.ack(entry_id)  # its worker has already given up on it, or it was answered
                continue
            log.info("re-sending %s after a reconnect", fields.get("req_id"))
            self._send_entry(entry_id, fields)

    def _expire_in_flight(self) -> None:
        """Forget sends 轻简 never answered; their workers counted them as failed already."""
        limit = time.time() - self.settings.qingjian_send_timeout - 5
        with self.lock:
            late = [(req, entry) for req, (entry, at) in self.in_flight.items() if at < limit]
            for req, _ in late:
                del self.in_flight[req]
        for req, entry in late:
            self._count("send_timeouts")
            self.channel.ack(entry)

    # -- bookkeeping ------------------------------------------------------------------------
    def _count(self, what: str) -> None:
        try:
            self.r.hincrby(self.keys.stats("listener"), what, 1)
        except redis.RedisError:
            pass

    def _set_state(self, connected: int) -> None:
        try:
            self.r.hset(self.keys.stats("listener"), "connected", connected)
        except redis.RedisError:
            pass


class LostLeadership(Exception):
    pass


def main() -> None:
    setup_logging("listener")
    app = create_app()
    listener = Listener(app.config["SETTINGS"])
    signal.signal(signal.SIGTERM, listener.stop)
    signal.signal(signal.SIGINT, listener.stop)
    listener.run()


if __name__ == "__main__":
    main()
