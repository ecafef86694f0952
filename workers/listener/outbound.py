"""What the listener does with sends: take them off the stream workers write (never one its worker gave
up on, never one past its deadline), send them, and report 轻简's answers: to the waiting worker (a
dispatch's message) or to `actions.advance` (an action's step, which never waits)."""
from __future__ import annotations

import logging
import threading
import time

import kombu.exceptions
import redis
import websocket

from app import queueing
from app.clients.qingjian import SendChannel
from app.clients.qingjian.channel import NOT_SENT
from app.domain.actions import parse_req_id

log = logging.getLogger("workers.listener")
GRACE_SECONDS = 5.0  # an unanswered send is reported failed this long after QINGJIAN_SEND_TIMEOUT


class Sender:
    def __init__(self, channel: SendChannel, consumer: str, send_timeout: float, count):
        self.channel, self.consumer, self.send_timeout = channel, consumer, send_timeout
        self.count = count
        self.in_flight: dict[str, tuple[str, float]] = {}  # req_id -> (stream entry id, sent at)
        self.lock = threading.Lock()
        self.ws: websocket.WebSocket | None = None

    # -- sending ----------------------------------------------------------------------------
    def pump(self, broken: threading.Event, stopping: threading.Event) -> None:
        """The send thread: stream entries out to 轻简 until the connection breaks or we stop."""
        while not broken.is_set() and not stopping.is_set():  # stopping: no new sends, answers still come
            try:
                entries = self.channel.read(self.consumer, block_ms=500)
                if entries and not self.send(entries):
                    broken.set()
            except redis.RedisError as exc:
                log.warning("cannot read the send stream: %s", exc)
                if "NOGROUP" in str(exc):  # Redis restarted empty: the stream and its group are gone
                    self._recreate_group()
                else:
                    time.sleep(1)

    def send(self, entries: list[tuple[str, dict]]) -> bool:
        """Take and send `entries`; False if the connection broke (the rest stay pending for the next)."""
        done, failed = [], []
        for (entry_id, fields), verdict in zip(entries, self.channel.take(entries)):
            req_id = fields.get("req_id", "")
            if verdict == "abandoned":  # its worker gave up on it: it never leaves
                done.append(entry_id)
            elif verdict == "expired":
                done.append(entry_id)
                failed.append((req_id, False, NOT_SENT))
                log.warning("send %s not sent: its deadline passed first", req_id, extra={"event": "send_expired"})
            else:
                with self.lock:
                    self.in_flight[req_id] = (entry_id, time.time())
                try:
                    self.ws.send(fields["frame"])
                except (OSError, websocket.WebSocketException, AttributeError) as exc:
                    log.warning("send %s not delivered (%s); it stays pending for the next connection", req_id, exc)
                    self.channel.ack(*done)
                    return False
                self.count("sends")
        self.channel.ack(*done)
        self.answered(failed)
        return True

    def resend_unacknowledged(self) -> None:
        """After a (re)connect: entries read but never answered, by us or by a dead listener."""
        entries, answered = [], []
        for entry_id, fields in self.channel.reclaim(self.consumer):
            if self.channel.result(fields.get("req_id", "")) is None:
                entries.append((entry_id, fields))
            else:
                answered.append(entry_id)
        self.channel.ack(*answered)
        if entries:
            log.info("re-sending %d unanswered sends after a reconnect", len(entries))
            self.send(entries)

    def _recreate_group(self) -> None:
        try:
            self.channel.ensure_group()
        except redis.RedisError:
            time.sleep(1)

    # -- answers ----------------------------------------------------------------------------
    def answered(self, answers: list[tuple[str, bool, str | None]]) -> None:
        """Report answers (and failures) by req_id: wake the dispatches waiting for theirs, hand the
        actions' to the `answers` inbox (drained by `actions.drain`), acknowledge their stream entries."""
        if not answers:
            return
        actions = [a for a in answers if parse_req_id(a[0])]
        others = [a for a in answers if not parse_req_id(a[0])]
        self.channel.report(actions, wake=False)
        self.channel.report(others, wake=True)
        with self.lock:
            entries = [entry for entry in (self.in_flight.pop(req, None) for req, _, _ in answers) if entry]
        self.channel.ack(*(entry_id for entry_id, _ in entries))
        if actions:
            try:
                queueing.enqueue_advance(actions)
            except (kombu.exceptions.KombuError, redis.RedisError, OSError) as exc:
                # The answers are stored: beat re-drives those actions when their leases lapse.
                log.error("could not hand %d answers to the answers inbox: %s", len(actions), exc,
                          extra={"event": "enqueue_failed"})

    def expire(self) -> None:
        """Sends 轻简 never answered: failed now, so their actions can go on (or retry)."""
        limit = time.time() - self.send_timeout - GRACE_SECONDS
        with self.lock:
            late = [req for req, (_, at) in self.in_flight.items() if at < limit]
        if late:
            self.count("send_timeouts", len(late))
            self.answered([(req, False, f"no send_result from 轻简 within {self.send_timeout:g}s") for req in late])

    def pending(self) -> int:
        with self.lock:
            return len(self.in_flight)
