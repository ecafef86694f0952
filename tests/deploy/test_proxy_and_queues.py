"""Small things a host needs: the client's address behind a proxy (TRUSTED_PROXIES, ProxyFix), and the
Celery queues bound to one named exchange under their own names."""
from __future__ import annotations

import pytest
from celery import Celery
from flask import request

from app import create_app
from celeryconfig import EXCHANGE, QUEUE_ORDER
from tests.conftest import make_settings


@pytest.fixture
def echo_client(sqlite_url, redis_base):
    def build(trusted_proxies: int):
        app = create_app(make_settings(sqlite_url, f"{redis_base}/8", trusted_proxies=trusted_proxies))
        app.add_url_rule("/_echo", "echo", lambda: {"addr": request.remote_addr, "scheme": request.scheme})
        return app.test_client()
    return build


def seen(client, forwarded_for: str, proto: str = "https") -> dict:
    return client.get("/_echo", headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": proto},
                      environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()


def test_without_trusted_proxies_a_forwarded_header_changes_nothing(echo_client):
    assert seen(echo_client(0), "203.0.113.9") == {"addr": "127.0.0.1", "scheme": "http"}


def test_behind_one_proxy_the_address_it_appended_is_the_client(echo_client):
    # nginx appends the address it saw; whatever the client wrote itself stays to the left
    assert seen(echo_client(1), "203.0.113.9, 198.51.100.4") == {"addr": "198.51.100.4", "scheme": "https"}


def test_behind_two_proxies_the_second_to_last_entry_is_the_client(echo_client):
    assert seen(echo_client(2), "203.0.113.9, 198.51.100.4, 10.0.0.2")["addr"] == "198.51.100.4"


def test_every_queue_is_bound_to_the_named_exchange_under_its_own_name():
    app = Celery("routing-check")
    app.config_from_object("celeryconfig")
    assert EXCHANGE.name == "tianwang" and EXCHANGE.type == "direct"
    for queue in app.amqp.queues.values():
        assert (queue.exchange.name, queue.exchange.type, queue.routing_key) == ("tianwang", "direct", queue.name)
    assert tuple(app.amqp.queues) == QUEUE_ORDER
    routed = {"messages.match": "match", "actions.advance": "actions", "actions.resume": "actions",
              "tasks.run_action": "actions", "callbacks.flush": "callbacks", "dispatch.advance": "dispatch",
              "maintenance.tick": "maintenance"}
    for task, queue in routed.items():
        route = app.amqp.router.route({}, task)
        assert (route["queue"].name, route["queue"].exchange.name, route["queue"].routing_key) == (queue, "tianwang",
                                                                                                 queue), task
