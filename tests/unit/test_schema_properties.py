"""Property tests of `TaskReceiveSchema` (CONTRACTS.md §1, POST /api/task/receive).

Bodies are generated from the contract's field rules (not from the schema's own declarations):
  * every valid body loads, keeps its unknown fields (at the top, in `customer`, `trigger` and `action`)
    untouched, fills the contract's defaults and leaves the input as it was;
  * the same body with ONE field made invalid, by a value from the contract's bad-input list or a
    generated one breaking the same rule, always raises ValidationError, and the error names that
    field's path the way the API reports it (`app.api.errors.flatten`: "trigger.keyword",
    "trigger.keywords.3", ...).
Checks that need the clock or the configuration (a time_reach time in the past, a missing acc_id) are
made by the intake service, not the schema; tests/api/test_bad_input.py covers those.
"""
from __future__ import annotations

import copy
import string
import unicodedata
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app.api.errors import flatten
from app.domain.times import parse_wire_time
from app.schemas import TaskReceiveSchema

SCHEMA = TaskReceiveSchema()
PROFILE = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# The contract's lists, written out here rather than imported, so the tests check the code against it.
TRIGGER_TYPES = ("specified_customer_reply", "customer_reply", "customer_keyword", "customer_payment",
                 "customer_order", "time_reach", "custom_event")
MESSAGE_TRIGGERS = TRIGGER_TYPES[:5]  # may carry lookback_seconds
ACTION_TYPES = ("send_message", "send_file", "send_link", "transfer_to_designer")
PRIORITIES = ("urgent", "high", "normal", "low")
TASK_ID_CHARS = string.ascii_letters + string.digits + "_.:-"
WHITESPACE = " \t\n\r\u3000\xa0"


# -- valid values ---------------------------------------------------------------------------------

def texts(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(min_size=min_size, max_size=max_size)


def non_blank(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=max_size).filter(lambda s: s.strip())


task_ids = st.text(TASK_ID_CHARS, min_size=1, max_size=128)
http_urls = st.builds(
    "{}://{}{}".format,
    st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,2}(:[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,12}){0,3}(\?[a-z0-9=&]{0,12})?", fullmatch=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts(0, 10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts(0, 6), inner, max_size=3),
    max_leaves=8,
)
# Unknown field names: never one of the schema's own (those all start with a letter other than "x").
extras = st.dictionaries(st.from_regex(r"x_[a-z0-9_]{1,10}", fullmatch=True), json_values, max_size=3)
lookbacks = st.integers(0, 3600) | st.floats(0, 3600)
# Keywords: at most 32 characters once normalised (NFKC can lengthen a character).
keywords = non_blank(20).filter(lambda s: len(unicodedata.normalize("NFKC", s).strip().lower()) <= 32)
keyword_lists = st.lists(keywords, min_size=1, max_size=50)


@st.composite
def future_times(draw) -> str:
    """A time_reach time 10 minutes to 60 days ahead, in one of the accepted wire forms."""
    moment = datetime.now(timezone.utc) + timedelta(seconds=draw(st.integers(600, 60 * 86400)))
    form = draw(st.sampled_from(["naive", "naive-T", "Z", "+08:00", "-05:00", "+00:00"]))
    if form.startswith("naive"):
        local = moment.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, microsecond=0)
        return local.isoformat(sep="T" if form == "naive-T" else " ")
    if form == "Z":
        return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    sign = 1 if form[0] == "+" else -1
    zone = timezone(sign * timedelta(hours=int(form[1:3])))
    return moment.astimezone(zone).isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds"])))


@st.composite
def triggers(draw, kind: str, customer_id: str | None) -> dict:
    trigger: dict = {"type": kind}
    if kind == "specified_customer_reply":
        trigger["customer_id"] = customer_id
        if draw(st.booleans()):
            trigger["customer_name"] = draw(st.none() | texts(0, 20))
    if kind in ("specified_customer_reply", "customer_reply"):
        trigger["keyword"] = draw(keywords)
        if draw(st.booleans()):
            trigger["exact_match"] = draw(st.booleans())
    elif kind == "customer_keyword":
        trigger["keywords"] = draw(keyword_lists)
    elif kind in ("customer_payment", "customer_order"):
        if draw(st.booleans()):
            trigger["keywords"] = draw(keyword_lists)
    elif kind == "time_reach":
        trigger["time"] = draw(future_times())
    elif kind == "custom_event":
        trigger["event"] = draw(non_blank(20))
        if draw(st.booleans()):
            trigger["match"] = draw(st.dictionaries(texts(1, 8), json_values, max_size=3))
    if kind in MESSAGE_TRIGGERS and draw(st.booleans()):
        trigger["lookback_seconds"] = draw(lookbacks)
    return trigger


@st.composite
def actions(draw, kind: str) -> dict:
    action: dict = {"type": kind}
    optional = st.none() | texts(0, 20)
    if kind == "send_message":
        action["message"] = draw(non_blank())
    elif kind == "send_file":
        action["file_url"] = draw(http_urls)
        for name in ("file_name", "message"):
            if draw(st.booleans()):
                action[name] = draw(optional)
    elif kind == "send_link":
        action["link_url"] = draw(http_urls)
        for name in ("title", "desc", "message"):
            if draw(st.booleans()):
                action[name] = draw(optional)
    else:
        if draw(st.booleans()):
            action["reason"] = draw(optional)
        if draw(st.booleans()):
            action["image_url"] = draw(st.none() | http_urls)
    return action


@st.composite
def valid_bodies(draw) -> dict:
    """A body the contract accepts (as far as the schema judges), unknown fields included."""
    kind = draw(st.sampled_from(TRIGGER_TYPES))
    customer_id = draw(non_blank(128).filter(lambda s: len(s) <= 128))
    body: dict = {"task_id": draw(task_ids), "type": draw(texts(1, 64)),
                  "trigger": draw(triggers(kind, customer_id)),
                  "action": draw(actions(draw(st.sampled_from(ACTION_TYPES))))}
    # customer: required with an id for time_reach; for specified_customer_reply its id, when given,
    # must be the trigger's customer_id.
    has_customer = kind == "time_reach" or draw(st.booleans())
    if has_customer:
        customer: dict = {}
        if kind in ("time_reach", "specified_customer_reply") or draw(st.booleans()):
            customer["id"] = customer_id
        if draw(st.booleans()):
            customer["name"] = draw(st.none() | texts(0, 128))
        body["customer"] = customer
    optional = {
        "acc_id": st.none() | texts(0, 128),
        "priority": st.sampled_from(PRIORITIES),
        "timeout_hours": st.integers(1, 720) | st.floats(0, 720, exclude_min=True),
        "max_retry": st.integers(0, 10),
        "created_by": st.none() | texts(0, 128),
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            body[name] = draw(values)
    for where in ("top", "trigger", "action", "customer"):
        target = body if where == "top" else body.get(where)
        if target is not None:
            target.update(draw(extras))
    return body


# -- the properties of valid bodies ---------------------------------------------------------------

@PROFILE
@given(valid_bodies())
def test_valid_bodies_load_and_keep_unknown_fields(body):
    original = copy.deepcopy(body)
    loaded = SCHEMA.load(body)
    assert body == original  # the input is not modified
    for section in (None, "customer", "trigger", "action"):
        source = body if section is None else body.get(section)
        if source is None:
            continue
        target = loaded if section is None else loaded[section]
        for key, value in source.items():
            if key.startswith("x_"):
                assert key in target and target[key] == value, (section, key)
    assert loaded["task_id"] == body["task_id"] and loaded["type"] == body["type"]
    assert loaded["trigger"]["type"] == body["trigger"]["type"]
    assert loaded["action"]["type"] == body["action"]["type"]
    assert loaded["priority"] == body.get("priority", "normal")
    assert loaded["timeout_hours"] == body.get("timeout_hours", 24)
    assert loaded["max_retry"] == body.get("max_retry", 3)
    assert loaded["trigger"]["exact_match"] is body["trigger"].get("exact_match", False)


# -- one field made invalid -----------------------------------------------------------------------

MISSING = object()


def blanks() -> st.SearchStrategy[str]:
    return st.text(WHITESPACE, max_size=4)  # "" included


def unparsable_times() -> st.SearchStrategy[str]:
    def unparsable(text: str) -> bool:
        try:
            parse_wire_time(text)
        except ValueError:
            return True
        return False

    fixed = st.sampled_from(["tomorrow morning", "2026-02-30 10:00:00", "2026-13-01 00:00:00", "10:00",
                             "2026/03/01 10:00:00", "2026-03-01 25:00:00"])
    return fixed | texts(1, 25).filter(unparsable)


def bad_task_ids() -> st.SearchStrategy:
    forbidden = st.sampled_from([" ", "/", "任", "\n", "#", "é", "\u3000", "?", "\\"])
    inserted = st.builds(lambda head, bad, tail: head + bad + tail,
                         st.text(TASK_ID_CHARS, max_size=20), forbidden, st.text(TASK_ID_CHARS, max_size=20))
    return st.sampled_from(["", "TASK 1", "TASK/1", "任务1", "TASK_1\n", MISSING, None, 12345]) | inserted \
        | st.text(TASK_ID_CHARS, min_size=129, max_size=200)


def not_objects() -> st.SearchStrategy:
    return st.sampled_from(["customer_reply", 1, True]) | st.lists(st.integers(), max_size=2)


# Each mutation: (expected error path, trigger types it applies to (None: all), action types (None: all),
# strategy of (dotted field, bad value)). `MISSING` as value removes the field. A path ending in ".*"
# means that field or anything below it (list items).
ALL = None
MUTATIONS = [
    ("task_id", ALL, ALL, st.tuples(st.just("task_id"), bad_task_ids())),
    ("type", ALL, ALL, st.tuples(st.just("type"), st.sampled_from(["", MISSING, None, 7, ["t"]])
                                 | st.text(min_size=65, max_size=90))),
    ("trigger", ALL, ALL, st.tuples(st.just("trigger"), st.just(MISSING) | not_objects())),
    ("trigger.type", ALL, ALL, st.tuples(st.just("trigger.type"),
                                         st.sampled_from(["customer_smiles", "", "CUSTOMER_REPLY", MISSING, None])
                                         | texts(1, 20).filter(lambda s: s not in TRIGGER_TYPES))),
    ("action", ALL, ALL, st.tuples(st.just("action"), st.just(MISSING) | not_objects())),
    ("action.type", ALL, ALL, st.tuples(st.just("action.type"),
                                        st.sampled_from(["send_email", "", MISSING, None])
                                        | texts(1, 20).filter(lambda s: s not in ACTION_TYPES))),
    ("priority", ALL, ALL, st.tuples(st.just("priority"), st.sampled_from(["asap", "HIGH", "Normal", "", None, 1])
                                     | texts(1, 10).filter(lambda s: s not in PRIORITIES))),
    # (a numeric string is read as its number: "24" is valid, "721" is not)
    ("timeout_hours", ALL, ALL, st.tuples(st.just("timeout_hours"), st.sampled_from([0, -1, 721, 720.5, "24h", "", True])
                                          | st.floats(max_value=0) | st.floats(min_value=720, exclude_min=True)
                                          | st.integers(max_value=0) | st.integers(min_value=721)
                                          | (st.integers(max_value=0) | st.integers(min_value=721)).map(str))),
    ("max_retry", ALL, ALL, st.tuples(st.just("max_retry"), st.sampled_from([11, -1, "3", 2.5, True, None])
                                      | st.integers(max_value=-1) | st.integers(min_value=11)
                                      | st.floats(allow_nan=False, allow_infinity=False).filter(
                                          lambda f: not f.is_integer()))),
    ("customer", ALL, ALL, st.tuples(st.just("customer"), st.sampled_from(["customer_123", 5, ["c"]]))),
    ("acc_id", ALL, ALL, st.tuples(st.just("acc_id"), st.text(min_size=129, max_size=150) | st.just(7))),
    ("created_by", ALL, ALL, st.tuples(st.just("created_by"), st.text(min_size=129, max_size=150))),
    # reply triggers
    ("trigger.keyword", ("specified_customer_reply", "customer_reply"), ALL,
     st.tuples(st.just("trigger.keyword"), st.just(MISSING) | blanks() | st.text(min_size=33, max_size=60)
               | st.sampled_from(["\ufdfa\ufdfa", "\u3300" * 9]))),  # 36 characters once normalised
    ("trigger.customer_name", ("specified_customer_reply",), ALL,
     st.tuples(st.just("trigger.customer_name"), st.text(min_size=129, max_size=140))),
    ("trigger.customer_id", ("specified_customer_reply",), ALL,
     st.tuples(st.just("trigger.customer_id"), st.just(MISSING) | blanks() | st.text(min_size=129, max_size=140))),
    ("customer.id", ("specified_customer_reply",), ALL, st.tuples(st.just("customer.id"), st.just("someone_else"))),
    # keyword lists
    ("trigger.keywords", ("customer_keyword",), ALL, st.tuples(st.just("trigger.keywords"), st.just(MISSING))),
    ("trigger.keywords", ("customer_keyword", "customer_payment", "customer_order"), ALL,
     st.tuples(st.just("trigger.keywords"), st.sampled_from([[], "好的", {"a": "好的"}])
               | st.lists(non_blank(5), min_size=51, max_size=60))),
    ("trigger.keywords.*", ("customer_keyword", "customer_payment", "customer_order"), ALL,
     st.tuples(st.just("trigger.keywords"),
               st.builds(lambda head, bad, tail: head + [bad] + tail, st.lists(non_blank(5), max_size=5),
                         blanks() | st.text(min_size=33, max_size=40), st.lists(non_blank(5), max_size=5)))),
    ("trigger.lookback_seconds", MESSAGE_TRIGGERS, ALL,
     st.tuples(st.just("trigger.lookback_seconds"), st.sampled_from([3601, -1, "10", True])
               | st.floats(min_value=3600, exclude_min=True) | st.floats(max_value=0, exclude_max=True))),
    # time_reach
    ("trigger.time", ("time_reach",), ALL,
     st.tuples(st.just("trigger.time"), st.sampled_from([MISSING, ""]) | unparsable_times())),
    ("customer.id", ("time_reach",), ALL, st.tuples(st.just("customer.id"), st.just(MISSING))),
    ("customer.id", ("time_reach",), ALL, st.tuples(st.just("customer"), st.just(MISSING))),
    ("trigger.lookback_seconds", ("time_reach", "custom_event"), ALL,
     st.tuples(st.just("trigger.lookback_seconds"), lookbacks)),
    # custom_event
    ("trigger.event", ("custom_event",), ALL, st.tuples(st.just("trigger.event"), st.just(MISSING) | blanks()
                                                        | st.text(min_size=129, max_size=140))),
    ("trigger.match", ("custom_event",), ALL, st.tuples(st.just("trigger.match"), st.sampled_from(["a", 1, [1]]))),
    # actions
    ("action.message", ALL, ("send_message",),
     st.tuples(st.just("action.message"), st.sampled_from([MISSING, None]) | blanks())),
    ("action.file_url", ALL, ("send_file",),
     st.tuples(st.just("action.file_url"), st.sampled_from([MISSING, "", "ftp://example.com/a.zip",
                                                            "javascript:alert(1)", "example.com/a.zip",
                                                            "https://", "http:// example.com"]))),
    ("action.link_url", ALL, ("send_link",),
     st.tuples(st.just("action.link_url"), st.sampled_from([MISSING, "", "ftp://example.com/",
                                                            "mailto:a@example.com", "//example.com"]))),
    ("action.image_url", ALL, ("transfer_to_designer",),
     st.tuples(st.just("action.image_url"), st.sampled_from(["", "javascript:alert(1)", "file:///etc/passwd",
                                                             "data:image/png;base64,AA", "//example.com/a.png"])
               | st.just("https://example.com/" + "a" * 2030))),
    ("action.message", ALL, ALL, st.tuples(st.just("action.message"), st.text(min_size=4097, max_size=4100))),
]


def set_path(body: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    if value is MISSING:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def names_path(paths, expected: str) -> bool:
    if expected.endswith(".*"):
        base = expected[:-2]
        return any(p.startswith(base + ".") for p in paths)
    return expected in paths


@PROFILE
@given(valid_bodies(), st.data())
def test_one_invalid_field_is_rejected_naming_its_path(body, data):
    kind, action_kind = body["trigger"]["type"], body["action"]["type"]
    applicable = [m for m in MUTATIONS if (m[1] is None or kind in m[1]) and (m[2] is None or action_kind in m[2])]
    expected, _, _, change = data.draw(st.sampled_from(applicable), label="mutation")
    field, value = data.draw(change, label="field, bad value")
    if value == "someone_else":
        value = body["trigger"]["customer_id"] + "_else"  # surely differs from trigger.customer_id
    bad = copy.deepcopy(body)
    set_path(bad, field, value)
    with pytest.raises(ValidationError) as info:
        SCHEMA.load(bad)
    paths = flatten(info.value.messages)
    assert names_path(paths, expected), (expected, paths)
    for reasons in paths.values():
        assert reasons and all(isinstance(r, str) and r for r in reasons), paths


def test_mutations_cover_every_trigger_and_action_type():
    """Every trigger and action type has at least one mutation of its own besides the shared ones."""
    for kind in TRIGGER_TYPES:
        assert any(m[1] is not None and kind in m[1] for m in MUTATIONS), kind
    for kind in ("send_message", "send_file", "send_link"):
        assert any(m[2] is not None and kind in m[2] for m in MUTATIONS), kind
