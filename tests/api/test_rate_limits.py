"""Rate limits (app.api.ratelimits): per API key, per client address without one, counted in Redis so the
budget holds across web processes; 429 in the envelope with Retry-After; probes and /metrics never
limited; limits from the environment; the console login's hook."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from flask import request

from app import create_app
from app.api.errors import envelope
from devkit import processes, stores
from tests.conftest import make_settings

KEY, OTHER_KEY = processes.API_KEY, "second-key-for-rate-limits"


def build(db_url, redis_url, **env):
    """An app whose settings come from the environment `env` adds (as a deployment's would)."""
    stores.truncate(db_url)
    redis.Redis.from_url(redis_url).flushdb()
    settings = make_settings(db_url, redis_url)
    return create_app(type(settings).from_env({**processes.base_env(db_url, redis_url), **env}))


@pytest.fixture
def make(db_url, redis_base):
    return lambda **env: build(db_url, f"{redis_base}/8", **env)


def assert_429(response):
    assert response.status_code == 429, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == 429 and body["data"] is None and "retry after" in body["message"], body
    return int(response.headers["Retry-After"])


def test_past_the_budget_a_429_in_the_envelope_says_when_to_come_back(make):
    client = make(RATE_LIMIT_PER_KEY="3/minute").test_client()
    for _ in range(3):
        assert client.get("/api/task/stats", headers={"X-API-Key": KEY}).status_code == 200
    wait = assert_429(client.get("/api/task/stats", headers={"X-API-Key": KEY}))
    assert 1 <= wait <= 61
    assert_429(client.post("/api/task/receive", json={}, headers={"X-API-Key": KEY}))  # every /api route shares it


def test_two_keys_have_budgets_of_their_own(make):
    client = make(TIANWANG_API_KEYS=f"{KEY},{OTHER_KEY}", RATE_LIMIT_PER_KEY="2/hour").test_client()
    first = {"X-API-Key": KEY}
    second = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert [client.get("/api/task/list", headers=first).status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/api/task/list", headers=second).status_code for _ in range(3)] == [200, 200, 429]


def test_without_a_valid_key_each_client_address_has_its_own_budget(make):
    client = make(RATE_LIMIT_PER_IP="3/hour", RATE_LIMIT_PER_KEY="100/hour").test_client()
    alice, bob = {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "10.0.0.2"}
    codes = [client.get("/api/task/list", headers={"X-API-Key": "guess"}, environ_base=alice).status_code,
             client.get("/api/openapi.json", environ_base=alice).status_code,
             client.get("/api/task/list", environ_base=alice).status_code]
    assert codes == [401, 200, 401]  # wrong keys, no key and the public document all count
    assert_429(client.get("/api/task/list", headers={"X-API-Key": "guess2"}, environ_base=alice))
    assert client.get("/api/task/list", environ_base=bob).status_code == 401  # another address: its own
    # A valid key from the same address is counted against the key, not the address.
    assert client.get("/api/task/list", headers={"X-API-Key": KEY}, environ_base=alice).status_code == 200


def test_behind_a_trusted_proxy_the_address_is_the_one_it_forwards(make):
    client = make(RATE_LIMIT_PER_IP="1/hour", TRUSTED_PROXIES="1").test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}

    def through_proxy(forwarded_for):
        return client.get("/api/openapi.json", headers={"X-Forwarded-For": forwarded_for}, environ_base=proxy)

    assert through_proxy("203.0.113.5").status_code == 200
    assert_429(through_proxy("203.0.113.5"))
    assert through_proxy("203.0.113.6").status_code == 200  # another client behind the same proxy
    # What a client writes itself into the header is not trusted: only the proxy's entry counts.
    assert_429(through_proxy("198.51.100.77, 203.0.113.5"))


def test_probes_and_metrics_are_never_limited(make):
    client = make(RATE_LIMIT_PER_IP="1/hour", RATE_LIMIT_PER_KEY="1/hour").test_client()
    for _ in range(5):
        assert client.get("/api/health").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/api/ready").status_code in (200, 503)  # 503: no beat or listener runs here
    assert client.get("/api/openapi.json").status_code == 200
    assert_429(client.get("/api/openapi.json"))
    assert client.get("/api/health").status_code == 200


def test_limits_come_from_the_environment(make, db_url, redis_base):
    assert [make(RATE_LIMIT_PER_KEY="1/minute").test_client().get(
        "/api/task/list", headers={"X-API-Key": KEY}).status_code for _ in range(2)] == [200, 200]  # a new app
    client = make(RATE_LIMIT_PER_KEY="1/minute").test_client()
    assert [client.get("/api/task/list", headers={"X-API-Key": KEY}).status_code for _ in range(2)] == [200, 429]
    unlimited = make(RATE_LIMIT_PER_KEY="off", RATE_LIMIT_PER_IP="off").test_client()
    assert {unlimited.get("/api/task/list", headers={"X-API-Key": KEY}).status_code for _ in range(50)} == {200}
    assert {unlimited.get("/api/openapi.json").status_code for _ in range(70)} == {200}
    settings = make(RATE_LIMIT_PER_KEY="").config["SETTINGS"]  # unset or empty: the documented defaults
    assert (settings.rate_limit_per_key, settings.rate_limit_per_ip, settings.rate_limit_login) == (
        "20000/minute", "60/minute", "10/minute;100/day")
    with pytest.raises(RuntimeError, match="RATE_LIMIT_PER_IP"):
        make(RATE_LIMIT_PER_IP="lots")


def test_with_redis_down_each_process_counts_for_itself_and_probes_answer(db_url):
    dead_redis = f"redis://127.0.0.1:{stores.free_port()}/0"
    stores.truncate(db_url)
    app = create_app(type(make_settings(db_url, dead_redis)).from_env(
        {**processes.base_env(db_url, dead_redis), "RATE_LIMIT_PER_KEY": "2/hour"}))
    client = app.test_client()
    assert client.get("/api/health").status_code == 200
    codes = [client.get("/api/task/list", headers={"X-API-Key": KEY}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_the_console_login_can_be_limited_per_address(make):
    from app.extensions import login_limit

    app = make(RATE_LIMIT_LOGIN="2/minute")

    @app.route("/console/login", methods=["GET", "POST"])
    @login_limit
    def console_login():
        return envelope(200, request.method)

    client = app.test_client()
    here, there = {"REMOTE_ADDR": "10.1.1.1"}, {"REMOTE_ADDR": "10.1.1.2"}
    assert [client.post("/console/login", environ_base=here).status_code for _ in range(2)] == [200, 200]
    assert_429(client.post("/console/login", environ_base=here))
    assert client.get("/console/login", environ_base=here).status_code == 200  # the form itself is not counted
    assert client.post("/console/login", environ_base=there).status_code == 200


# -- across processes: two gunicorn servers, each with two workers, one Redis ---------------------

def test_two_gunicorn_servers_share_one_budget_per_key(app, db_url, redis_base, tmp_path, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_PER_KEY", "10/hour")
    redis_url = f"{redis_base}/8"  # emptied by `app`
    with processes.gunicorn(db_url, redis_url, tmp_path / "one.log") as one, \
            processes.gunicorn(db_url, redis_url, tmp_path / "two.log") as two:
        urls = [f"{base}/api/task/list" for base in (one, two)] * 15

        def get(url):
            return requests.get(url, headers={"X-API-Key": KEY}, timeout=10)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(get, urls))
        codes = [answer.status_code for answer in answers]
        # Counted per process, four gunicorn workers would have let 40 through; counted in Redis, 10.
        assert codes.count(200) == 10 and codes.count(429) == 20, codes
        assert {answer.url.split("/api")[0] for answer in answers if answer.status_code == 429} == {one, two}
        refused = next(answer for answer in answers if answer.status_code == 429)
        assert refused.json()["code"] == 429 and refused.json()["data"] is None
        assert 1 <= int(refused.headers["Retry-After"]) <= 3601
        assert requests.get(f"{two}/api/health", timeout=5).status_code == 200
