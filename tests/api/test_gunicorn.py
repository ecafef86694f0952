"""The intake API served by a real gunicorn (`wsgi:app`, 2 workers x 4 threads), spoken to over HTTP."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devkit import processes, stores
from tests.api.helpers import task_body
from tests.conftest import uid


def _envelope(response: requests.Response, code: int) -> dict:
    assert response.status_code == code, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["code"] == code and isinstance(body["message"], str) and "data" in body, body
    return body


@pytest.fixture
def server(app, db_url, redis_base, tmp_path):
    """gunicorn on a free loopback port, against the test database and Redis DB 8 (both emptied by `app`)."""
    if not (stores.ROOT / "wsgi.py").exists():
        pytest.fail("wsgi.py (exposing `app = create_app()`) is missing at the project root")
    with processes.gunicorn(db_url, f"{redis_base}/8", tmp_path / "gunicorn.log") as base:
        yield base


def test_intake_over_http_under_gunicorn(server):
    key = {"X-API-Key": processes.API_KEY}
    task_id = uid()
    body = task_body(task_id)
    url = f"{server}/api/task/receive"

    health = _envelope(requests.get(f"{server}/api/health", timeout=5), 200)
    assert health["data"]["service"] == "tianwang-bridge"

    first = _envelope(requests.post(url, json=body, headers=key, timeout=10), 200)
    assert first == {"code": 200, "message": "任务接收成功", "data": {"task_id": task_id, "status": "waiting"}}

    again = _envelope(requests.post(url, json=body, headers=key, timeout=10), 200)
    assert again["data"] == {"task_id": task_id, "status": "waiting"}

    other = dict(body, priority="urgent")
    conflict = _envelope(requests.post(url, json=other, headers=key, timeout=10), 409)
    assert conflict["data"]["status"] == "waiting"

    _envelope(requests.post(url, json=task_body(uid()), timeout=10), 401)
    _envelope(requests.post(url, json=task_body(uid()), headers={"X-API-Key": "wrong"}, timeout=10), 401)
    bearer = _envelope(requests.post(url, json=task_body(uid()), timeout=10,
                                     headers={"Authorization": f"Bearer {processes.API_KEY}"}), 200)
    assert bearer["data"]["status"] == "waiting"

    big = json.dumps(task_body(uid(), padding="x" * int(1.1 * 1024 * 1024)))
    too_big = _envelope(requests.post(url, data=big, timeout=30,
                                      headers={**key, "Content-Type": "application/json"}), 413)
    assert too_big["data"] is None

    for raw in (b"{not json", b"[1, 2]"):
        bad = _envelope(requests.post(url, data=raw, timeout=10,
                                      headers={**key, "Content-Type": "application/json"}), 400)
        assert bad["data"] is None

    # A small body sent chunked (no Content-Length) is read whole and accepted.
    chunked_small = _envelope(requests.post(url, data=_chunked(json.dumps(task_body(uid())).encode()), timeout=10,
                                            headers={**key, "Content-Type": "application/json"}), 200)
    assert chunked_small["data"]["status"] == "waiting"

    invalid = _envelope(requests.post(url, json=task_body(uid(), priority="asap"), headers=key, timeout=10), 422)
    assert "priority" in invalid["errors"]

    missing = _envelope(requests.get(f"{server}/api/nope", headers=key, timeout=10), 404)
    assert missing["data"] is None
    _envelope(requests.get(url, headers=key, timeout=10), 405)

    # The accepted tasks are stored, once each; the refused ones are not.
    listed = _envelope(requests.get(f"{server}/api/task/list", headers=key, timeout=10), 200)
    assert listed["data"]["total"] == 3
    status = _envelope(requests.get(f"{server}/api/task/status/{task_id}", headers=key, timeout=10), 200)
    assert status["data"]["priority"] == "normal"

    # The same new body on 16 connections at once, across both workers: all 200, stored once.
    fresh_id = uid()
    fresh = task_body(fresh_id)

    def post(_):
        return requests.post(url, json=fresh, headers=key, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(16)))
    for answer in answers:
        assert _envelope(answer, 200)["data"]["task_id"] == fresh_id
    events = _envelope(requests.get(f"{server}/api/task/{fresh_id}/events", headers=key, timeout=10), 200)
    assert [e["kind"] for e in events["data"]["events"]] == ["received", "status"]


def _chunked(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_chunked_body_over_1_mib_is_413_under_gunicorn(server):
    key = {"X-API-Key": processes.API_KEY, "Content-Type": "application/json"}
    url = f"{server}/api/task/receive"
    padded = json.dumps(task_body(uid(), padding="x" * int(1.1 * 1024 * 1024))).encode()
    trailing = json.dumps(task_body(uid())).encode() + b" " * int(1.1 * 1024 * 1024)
    codes = []
    for raw in (padded, trailing):
        try:
            codes.append(requests.post(url, data=_chunked(raw), headers=key, timeout=30).status_code)
        except requests.ConnectionError:
            codes.append("reset")  # a server may close mid-upload after answering 413
    listed = requests.get(f"{server}/api/task/list", headers=key, timeout=10).json()
    assert codes == [413, 413] and listed["data"]["total"] == 0, (codes, listed["data"]["total"])
