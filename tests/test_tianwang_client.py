"""`app.clients.tianwang.post` against a real loopback 天网 (the fake, CONTRACTS.md §1 "Callback"): what
goes on the wire (body, event id, signature) and how each kind of answer is classified."""
from __future__ import annotations

import json

import pytest
import requests

from app.clients import tianwang
from devkit.fakes.tianwang import FakeTianwang, sign

pytestmark = pytest.mark.timeout(30)

SECRET = "回调-secret-7"
EVENT_ID = "0b9f6a52-9d43-4c1e-8f0e-3c2a1d5e7f90"
BODY = json.dumps({"event_id": EVENT_ID, "task_id": "TASK_1", "status": "completed", "error": None,
                   "result": {"备注": "完成"}, "timestamp": "2026-02-27T10:00:03+08:00"}, ensure_ascii=False)


@pytest.fixture
def fake():
    with FakeTianwang(secret=SECRET) as server:
        yield server


@pytest.fixture
def session():
    with requests.Session() as http:
        yield http


def post(session, fake, secret: str | None = SECRET, body: str = BODY) -> int:
    return tianwang.post(session, fake.url, EVENT_ID, body, secret)


# -- what is sent ----------------------------------------------------------------------------------

def test_the_body_event_id_and_signature_go_on_the_wire(session, fake):
    assert post(session, fake) == 200
    [got] = fake.received
    assert got["raw"] == BODY.encode("utf-8")  # the exact bytes that were signed
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert headers["x-tianwang-event-id"] == EVENT_ID
    # the receiver's own HMAC (devkit's `sign`, written from the contract) agrees
    assert headers["x-tianwang-signature"] == sign(SECRET, BODY.encode("utf-8"))
    assert headers["content-type"].startswith("application/json")
    assert fake.bad_signatures == 0 and fake.contract_violations == []
    assert list(fake.events) == [EVENT_ID]


def test_without_a_secret_no_signature_is_sent(session):
    with FakeTianwang() as open_fake:
        assert post(session, open_fake, secret=None) == 200
        [got] = open_fake.received
    assert "x-tianwang-signature" not in {k.lower() for k in got["headers"]}


def test_a_receiver_with_another_secret_rejects_the_signature(session, fake):
    with pytest.raises(tianwang.CallbackRejected, match="401"):
        post(session, fake, secret="not-" + SECRET)
    assert fake.bad_signatures == 1 and fake.events == {}


# -- how answers are classified ----------------------------------------------------------------------

@pytest.mark.parametrize("status", [200, 201, 202])
def test_any_2xx_is_success(session, fake, status):
    fake.answer_with(status, times=1)
    assert post(session, fake) == status


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_are_worth_retrying(session, fake, status):
    fake.answer_with(status, times=1)
    with pytest.raises(tianwang.CallbackRetryable, match=str(status)):
        post(session, fake)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 410, 422])
def test_other_4xx_are_rejected_not_retried(session, fake, status):
    fake.answer_with(status, times=1)
    with pytest.raises(tianwang.CallbackRejected, match=str(status)):
        post(session, fake)
    assert len(fake.received) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_attempt_retried_and_not_followed(session, fake, status):
    fake.redirect(fake.base_url + "/moved", status, times=1)
    with pytest.raises(tianwang.CallbackRetryable, match=str(status)):
        post(session, fake)
    assert [r["path"] for r in fake.requests] == ["/callback"]  # nobody went to /moved


def test_a_timeout_is_worth_retrying(session, fake):
    fake.hang(2.0, times=1)
    with pytest.raises(tianwang.CallbackRetryable, match="Timeout"):
        tianwang.post(session, fake.url, EVENT_ID, BODY, SECRET, timeout=0.3)
    assert [p["hung"] for p in fake.received] == [2.0]


def test_a_dropped_connection_is_worth_retrying(session, fake):
    fake.drop_next(1)
    with pytest.raises(tianwang.CallbackRetryable):
        post(session, fake)
    assert [p["dropped"] for p in fake.received] == [True]
    assert post(session, fake) == 200  # and the next attempt gets through


def test_a_receiver_that_is_down_is_worth_retrying(session, fake):
    fake.down()
    with pytest.raises(tianwang.CallbackRetryable, match="ConnectionError"):
        post(session, fake)
    assert fake.received == []
