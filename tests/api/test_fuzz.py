"""Fuzzing the intake API (CONTRACTS.md §1) with schemathesis, over HTTP, against a real gunicorn.

The OpenAPI document the server publishes at /api/openapi.json drives the fuzzer: every operation in it
gets a bounded, derandomized run (schemathesis' coverage cases plus `MAX_EXAMPLES` generated ones).
Every answer must be:
  * no 5xx (the only exception: GET /api/ready may answer 503, which it documents; this setup runs no
    listener and no beat, so their heartbeats are stale);
  * JSON in the envelope `{"code": <int == HTTP status>, "message": <str>, "data": ...}`, with `errors`
    (when present) a dict of field path -> non-empty list of strings;
  * conform to schemathesis' checks, response-schema conformance included where the document describes
    the answer with the envelope schema.

/metrics (Prometheus text) and /api/docs (HTML) are not in the document; they are checked separately.

Defects it found (errors documented with flask-smorest's Error schema, a 405 without Allow, the body
check winning over routing, /metrics' doubled charset, 500s on extreme times, lone surrogates and NUL)
are fixed; the tests at the end of this file keep them fixed.
  1. the document describes every error answer (its `default` response, and the 422 that
     flask-smorest adds to operations with `@blp.arguments`) with flask-smorest's `Error` schema, which
     has `additionalProperties: false` and no `data`; the real answers are the envelope, with `data`;
  2. a 405 carries no `Allow` header (RFC 9110 §15.5.6 requires it): the envelope error handler
     rebuilds the response and drops the HTTPException's headers;
  3. /metrics answers `Content-Type: text/plain; version=1.0.0; charset=utf-8; charset=utf-8`
     (the charset parameter twice), which strict media-type parsers reject;
  4. a POST/PUT/PATCH to a path or method that does not exist, with no JSON-object body, gets 400
     ("body must be a JSON object") instead of 404/405: the guard checks the body before routing
     (with `{}` as body the same requests get 404/405).

The document-driven fuzzer sends only well-formed, representable input. `test_edge_input_is_never_5xx`
(at the end) sends what it cannot: extreme time_reach times, lone UTF-16 surrogates (valid JSON escapes,
not valid Unicode) and NUL characters, to an in-process app on SQLite and on PostgreSQL. Defects 5-7
are the inputs that once gave 500s.

No Celery worker is started: enqueues only publish to the broker (Redis DB 8).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    positive_data_acceptance,
    unsupported_method,
)

from devkit import processes, stores

KEY = {"X-API-Key": processes.API_KEY}
BEARER = {"Authorization": f"Bearer {processes.API_KEY}"}
MAX_EXAMPLES = 25
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))
ENVELOPE_REF = "#/components/schemas/Envelope"
PUBLIC_OPERATIONS = {("GET", "/api/health"), ("GET", "/api/ready")}
# CONTRACTS.md §1 "Other endpoints" plus POST /api/task/receive: the fuzzer must reach every one.
CONTRACT_OPERATIONS = {
    ("POST", "/api/task/receive"), ("GET", "/api/task/status/{task_id}"), ("POST", "/api/task/cancel"),
    ("GET", "/api/task/list"), ("GET", "/api/task/stats"), ("GET", "/api/task/{task_id}/events"),
    ("POST", "/api/event"), ("POST", "/api/dispatch/transfer"), ("GET", "/api/dispatch/{dispatch_id}"),
    ("GET", "/api/health"), ("GET", "/api/ready"), ("GET", "/api/task/{task_id}/explain"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# -- the server -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, redis_base):
    """gunicorn (`wsgi:app`, 2 workers x 4 threads) on a free loopback port, against a fresh SQLite file
    and Redis DB 8 (flushed first). Module-scoped: one server for the whole fuzz run."""
    tmp = tmp_path_factory.mktemp("fuzz")
    db_url = f"sqlite:///{tmp / 'fuzz.db'}"
    stores.reset_database(db_url)
    redis_url = f"{redis_base}/8"
    redis.Redis.from_url(redis_url).flushdb()
    log_path = tmp / "gunicorn.log"
    with processes.gunicorn(db_url, redis_url, log_path) as base:
        yield base
    tail = log_path.read_text(errors="replace")
    # A traceback in the server log means an unhandled error somewhere, even if answered as a 5xx.
    assert "Traceback" not in tail, tail[-4000:]


@pytest.fixture(scope="module")
def http(fuzz_server):
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def openapi_doc(fuzz_server) -> dict:
    answer = requests.get(f"{fuzz_server}/api/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    return answer.json()


def published_document() -> dict:
    """The OpenAPI document as the app serves it at GET /api/openapi.json.

    schemathesis needs it when the tests are collected, before any fixture has started a server, and
    its lazy loader (`schemathesis.pytest.from_fixture`) is broken under pytest 9.2 (it sets
    `Node._nodeid`, which pytest removed). So a child process builds the app (no database or Redis is
    touched to do so) and asks it through Flask's test client;
    `test_live_server_publishes_the_fuzzed_document` checks that the live server serves exactly this.
    """
    code = ("import sys\nfrom app import create_app\n"
            "answer = create_app().test_client().get('/api/openapi.json')\n"
            "assert answer.status_code == 200, answer.status_code\n"
            "sys.stdout.write(answer.get_data(as_text=True))\n")
    never_opened = os.path.join(tempfile.gettempdir(), "fuzz-collect-never-opened.db")
    env = processes.base_env(f"sqlite:///{never_opened}", "redis://127.0.0.1:1/8", LOG_LEVEL="WARNING")
    child = subprocess.run([sys.executable, "-c", code], env=env, cwd=stores.ROOT, capture_output=True,
                           text=True, timeout=120)
    if child.returncode != 0:
        raise RuntimeError("could not build the OpenAPI document:\n" + child.stderr[-4000:])
    return json.loads(child.stdout)


DOCUMENT = published_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


# -- helpers --------------------------------------------------------------------------------------

def documented_schema(doc: dict, path: str, method: str, status: int) -> str | None:
    """The `$ref` of the JSON schema the document gives for this answer (None: not documented)."""
    operation = doc["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return None
    responses = operation["responses"]
    entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    if entry is None:
        return None
    while "$ref" in entry:  # e.g. #/components/responses/DEFAULT_ERROR
        entry = doc["components"]["responses"][entry["$ref"].rsplit("/", 1)[-1]]
    body = entry.get("content", {}).get("application/json", {}).get("schema", {})
    return body.get("$ref")


def is_envelope(doc: dict, ref: str | None) -> bool:
    """The envelope schema, or one that gives its `data` a schema of its own (e.g. ExplainEnvelope)."""
    if ref is None or ref == ENVELOPE_REF:
        return ref is not None
    properties = doc["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
    return set(properties) == set(doc["components"]["schemas"]["Envelope"]["properties"])


def header(response, name: str) -> str | None:
    for key, values in response.headers.items():
        if key.lower() == name.lower():
            return ", ".join(values) if isinstance(values, list) else values
    return None


def assert_envelope(response, where: str) -> dict:
    """The answer is JSON in the envelope with `code` == HTTP status (CONTRACTS.md §1)."""
    status = response.status_code
    content_type = header(response, "Content-Type") or ""
    assert content_type.startswith("application/json"), f"{where}: {status} {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict), f"{where}: {body!r}"
    assert {"code", "message", "data"} <= set(body) <= {"code", "message", "data", "errors"}, f"{where}: {body}"
    assert type(body["code"]) is int and body["code"] == status, f"{where}: HTTP {status}, body {body}"
    assert isinstance(body["message"], str) and body["message"], f"{where}: {body}"
    if "errors" in body:
        errors = body["errors"]
        assert isinstance(errors, dict) and errors, f"{where}: {body}"
        for path, reasons in errors.items():
            assert isinstance(path, str) and path, f"{where}: {body}"
            assert isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons), \
                f"{where}: {body}"
    return body


# -- the fuzz run ---------------------------------------------------------------------------------

def test_live_server_publishes_the_fuzzed_document(openapi_doc):
    assert openapi_doc["openapi"].startswith("3.")  # plain JSON, no envelope, no key needed
    assert openapi_doc == DOCUMENT


def test_document_has_every_contract_operation(openapi_doc):
    documented = {(method.upper(), path) for path, item in openapi_doc["paths"].items()
                  for method in item if method in HTTP_METHODS}
    assert CONTRACT_OPERATIONS <= documented, sorted(CONTRACT_OPERATIONS - documented)


# Both ways of presenting the key (CONTRACTS.md §1). Parametrizing also gives each operation its own
# node id: under pytest 9.2 schemathesis' items of one test otherwise all share the test's bare id.
@pytest.mark.parametrize("credentials", [KEY, BEARER], ids=["x-api-key", "bearer"])
@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_every_operation(case, credentials, fuzz_server, http):
    path, declared = case.operation.path, case.operation.method.upper()
    response = case.call(base_url=fuzz_server, session=http, headers=credentials, timeout=15)
    method, status = response.request.method, response.status_code
    where = (case.as_curl_command(headers=credentials, base_url=fuzz_server)
             + f"\n-> {status} {response.content[:500]!r}")

    # No 5xx, except the documented 503 of /api/ready.
    ready = (declared, path) == ("GET", "/api/ready") and method in ("GET", "HEAD")
    assert status < 500 or (ready and status == 503), where

    excluded = [
        # Undeclared methods are checked below and by the dedicated 405/Allow and routing tests at
        # the end of this file.
        unsupported_method,
        # The document cannot say everything the contract validates (which fields each trigger/action
        # type needs, time_reach times in the past, the same task_id with another body = 409), so
        # schema-valid bodies are legitimately refused with 422/409 here.
        positive_data_acceptance,
    ]
    if ready:
        excluded.append(not_a_server_error)
    if path == "/api/dispatch/transfer":
        # The templates /api/dispatch/transfer and /api/dispatch/{dispatch_id} overlap, so OPTIONS on
        # the former truthfully advertises GET (served by the latter, a 404 for id "transfer").
        excluded.append(allow_header_conformance)

    if method == "HEAD":
        assert not response.content, where
    elif method == "OPTIONS" and status == 200:
        assert not response.content and header(response, "Allow"), where  # Flask's automatic OPTIONS
    else:
        assert_envelope(response, where)
        if method.lower() not in DOCUMENT["paths"][path]:
            # A method the document does not declare for this path: 405, or 404 where the path also
            # matches another template (GET /api/dispatch/transfer is a lookup of dispatch "transfer").
            # Never the body check's 400: routing wins over it (defect 4, fixed).
            assert status in (404, 405), where

    case.validate_response(response, excluded_checks=excluded, headers=credentials,
                           transport_kwargs={"base_url": fuzz_server, "headers": credentials})


# -- without the key ------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_requests_without_a_valid_key_are_401(data, fuzz_server, http):
    """Generated requests to every protected operation, with no key, a wrong key or a wrong bearer."""
    operations = sorted((op.method.upper(), op.path) for op in
                        (result.ok() for result in schema.get_all_operations())
                        if (op.method.upper(), op.path) not in PUBLIC_OPERATIONS)
    assert len(operations) >= len(CONTRACT_OPERATIONS - PUBLIC_OPERATIONS)
    method, path = data.draw(st.sampled_from(operations), label="operation")
    case = data.draw(schema[path][method].as_strategy(), label="case")
    credentials = data.draw(st.sampled_from([{}, {"X-API-Key": "wrong"}, {"X-API-Key": processes.API_KEY + "x"},
                                             {"Authorization": "Bearer wrong"},
                                             {"Authorization": processes.API_KEY}]), label="credentials")
    if case.headers:
        for name in [n for n in case.headers if n.lower() in ("x-api-key", "authorization")]:
            del case.headers[name]
    response = case.call(base_url=fuzz_server, session=http, headers=credentials, timeout=15)
    sent = response.request.headers
    assert sent.get("X-API-Key") in (None, "wrong", processes.API_KEY + "x"), sent
    where = (case.as_curl_command(headers=credentials, base_url=fuzz_server)
             + f"\n-> {response.status_code} {response.content[:300]!r}")
    assert response.status_code == 401, where
    assert assert_envelope(response, where)["data"] is None


# -- the endpoints outside the document -----------------------------------------------------------

def test_metrics_is_prometheus_text(fuzz_server, http):
    from prometheus_client.parser import text_string_to_metric_families

    answer = http.get(f"{fuzz_server}/metrics", timeout=10)  # no key needed
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("text/plain"), answer.headers
    families = list(text_string_to_metric_families(answer.text))
    assert families and all(f.name for f in families)


def test_docs_is_an_html_page_that_loads_nothing_from_outside(fuzz_server, http):
    answer = http.get(f"{fuzz_server}/api/docs", timeout=10)  # no key needed
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("text/html"), answer.headers
    assert "<html" in answer.text.lower() and "/api/openapi.json" in answer.text
    for tag in ('src="http', "src='http", 'href="http', "href='http"):
        assert tag not in answer.text.replace(f'"{fuzz_server}', '"').replace(f"'{fuzz_server}", "'"), tag


# -- defects the fuzzer found, kept fixed --

def test_every_documented_answer_is_the_envelope(openapi_doc):
    wrong = []
    for path, item in openapi_doc["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status in operation["responses"]:
                probe = 400 if status == "default" else int(status.replace("X", "0"))
                ref = documented_schema(openapi_doc, path, method, probe)
                if status != "default" and ref is None:
                    continue
                if not is_envelope(openapi_doc, ref):
                    wrong.append(f"{method.upper()} {path} {status}: {ref}")
    assert not wrong, "\n".join(wrong)


def test_405_names_the_allowed_methods(fuzz_server, http):
    for method, path, allowed in (("TRACE", "/api/health", {"GET"}), ("GET", "/api/task/receive", {"POST"}),
                                  ("DELETE", "/api/task/stats", {"GET"})):
        answer = http.request(method, f"{fuzz_server}{path}", headers=KEY, timeout=10)
        assert answer.status_code == 405
        assert_envelope_requests(answer)
        advertised = {m.strip().upper() for m in answer.headers.get("Allow", "").split(",") if m.strip()}
        assert allowed <= advertised, (method, path, answer.headers)


def test_metrics_content_type_has_each_parameter_once(fuzz_server, http):
    content_type = http.get(f"{fuzz_server}/metrics", timeout=10).headers["Content-Type"]
    names = [p.split("=", 1)[0].strip().lower() for p in content_type.split(";")[1:]]
    assert len(names) == len(set(names)), content_type


def assert_envelope_requests(answer: requests.Response) -> None:
    body = answer.json()
    assert body["code"] == answer.status_code and isinstance(body["message"], str) and "data" in body, body


def test_routing_errors_win_over_the_body_check(fuzz_server, http):
    for method, path, expected in (("POST", "/api/health", 405), ("PUT", "/api/task/receive", 405),
                                   ("POST", "/api/task/stats", 405), ("POST", "/api/nope", 404)):
        answer = http.request(method, f"{fuzz_server}{path}", headers=KEY, timeout=10)
        assert_envelope_requests(answer)
        assert answer.status_code == expected, (method, path, answer.status_code, answer.text)


# -- input the document-driven fuzzer cannot produce --------------------------------------------------

D5 = D6 = D7 = ()  # defects 5-7 (500s on extreme times, lone surrogates, NUL) were fixed
_TRIGGER = '"trigger": {"type": "customer_reply", "keyword": "k"}'
_ACTION = '"action": {"type": "send_message", "message": "m"}'


def _receive(task_id: str, extra: str = "", trigger: str = _TRIGGER, action: str = _ACTION) -> str:
    return f'{{"task_id": "{task_id}", "type": "t", {trigger}, {action}{extra}}}'


def _time_reach(task_id: str, when: str) -> str:
    trigger = f'"trigger": {{"type": "time_reach", "time": "{when}"}}, "customer": {{"id": "c1"}}'
    return _receive(task_id, trigger=trigger)


# (id, method, path, raw JSON body or None, marks for sqlite, marks for postgresql)
EDGE_INPUT = [
    ("time_reach-9999-12-31-naive", "POST", "/api/task/receive", _time_reach("E_1", "9999-12-31 23:59:59"), D5, D5),
    ("time_reach-9999-12-31-minus-14h", "POST", "/api/task/receive",
     _time_reach("E_2", "9999-12-31T23:59:59-14:00"), D5, D5),
    ("time_reach-0001-01-01-plus-14h", "POST", "/api/task/receive",
     _time_reach("E_3", "0001-01-01T00:00:00+14:00"), D5, D5),
    ("time_reach-0001-01-02-utc", "POST", "/api/task/receive", _time_reach("E_4", "0001-01-02T00:00:00Z"), (), ()),
    ("surrogate-keyword", "POST", "/api/task/receive",
     _receive("E_5", trigger='"trigger": {"type": "customer_reply", "keyword": "\\ud800"}'), D6, D6),
    ("surrogate-unknown-field", "POST", "/api/task/receive", _receive("E_6", ', "x_note": "\\udc00"'), D6, D6),
    ("surrogate-invalid-body", "POST", "/api/task/receive", '{"task_id": "E\\ud800", "type": "t"}', D6, D6),
    ("surrogate-cancel", "POST", "/api/task/cancel", '{"task_id": "E\\ud800"}', D6, D6),
    ("surrogate-dispatch", "POST", "/api/dispatch/transfer", '{"customer_id": "c\\ud800"}', D6, D6),
    ("surrogate-event", "POST", "/api/event", '{"event": "e\\ud800", "data": {"k": "\\udc00"}}', (), ()),
    ("nul-type", "POST", "/api/task/receive", _receive("E_7").replace('"t"', '"t\\u0000"', 1), (), D7),
    ("nul-customer-id", "POST", "/api/task/receive", _receive("E_8", ', "customer": {"id": "c\\u0000"}'), (), D7),
    ("nul-keyword", "POST", "/api/task/receive",
     _receive("E_9", trigger='"trigger": {"type": "customer_reply", "keyword": "k\\u0000"}'), (), D7),
    ("nul-message", "POST", "/api/task/receive",
     _receive("E_10", action='"action": {"type": "send_message", "message": "m\\u0000"}'), (), D7),
    ("nul-created_by", "POST", "/api/task/receive", _receive("E_11", ', "created_by": "\\u0000"'), (), D7),
    ("nul-cancel", "POST", "/api/task/cancel", '{"task_id": "E\\u0000"}', (), D7),
    ("nul-dispatch", "POST", "/api/dispatch/transfer", '{"customer_id": "c\\u0000"}', (), D7),
    ("nul-status", "GET", "/api/task/status/E%00", None, (), D7),
    ("nul-events", "GET", "/api/task/E%00/events", None, (), D7),
    ("nul-dispatch-record", "GET", "/api/dispatch/E%00", None, (), D7),
    ("nul-list-filter", "GET", "/api/task/list?customer_id=c%00", None, (), D7),
    ("nan-timeout_hours", "POST", "/api/task/receive", _receive("E_12", ', "timeout_hours": NaN'), (), ()),
    ("infinity-lookback", "POST", "/api/task/receive",
     _receive("E_13", trigger='"trigger": {"type": "customer_reply", "keyword": "k", "lookback_seconds": Infinity}'),
     (), ()),
    ("bool-max_retry", "POST", "/api/task/receive", _receive("E_14", ', "max_retry": true'), (), ()),
    ("huge-page", "GET", "/api/task/list?page=99999999999999999999999", None, (), ()),
]


@pytest.mark.parametrize("method,path,raw,backend", [
    pytest.param(method, path, raw, backend, id=f"{case_id}-{backend}", marks=marks)
    for case_id, method, path, raw, *per_backend in EDGE_INPUT
    for backend, marks in zip(("sqlite", "postgresql"), per_backend)
])
def test_edge_input_is_never_5xx(request, redis_base, method, path, raw, backend):
    """Answered in the envelope with a 2xx or 4xx, never 5xx (CONTRACTS.md §1). Runs last in this file:
    it empties Redis DB 8, which the module's gunicorn no longer needs by then."""
    from app import create_app
    from tests.conftest import make_settings

    db_url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[backend])
    redis_url = f"{redis_base}/8"
    stores.truncate(db_url)
    redis.Redis.from_url(redis_url).flushdb()
    client = create_app(make_settings(db_url, redis_url)).test_client()
    answer = client.open(path, method=method, data=raw, headers={**KEY, "Content-Type": "application/json"})
    where = f"{method} {path} {raw!r} ({backend}) -> {answer.status_code} {answer.data[:300]!r}"
    assert answer.status_code < 500, where
    assert answer.mimetype == "application/json", where
    body = answer.get_json()
    assert body["code"] == answer.status_code and isinstance(body["message"], str) and "data" in body, where
