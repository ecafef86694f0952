"""Property tests: `matches()` agrees with a plain reference reading of CONTRACTS.md §1, the index
(`index_keys` + `substrings`) never loses a task that `matches` would fire, and the explanation
(app.domain.explain) says "fires" exactly when the matcher does."""
from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import explain as ex
from app.domain.events import InboundEvent
from app.domain.probes import substrings
from app.domain.triggers import MESSAGE_TRIGGERS, compile_spec, firing_order, index_keys, matches, within_lookback

PAYMENT_DEFAULTS = ("已付款", "已支付", "拍下了", "付过了")
ORDER_DEFAULTS = ("已下单", "下单了", "拍了")

# Small alphabets so keywords and texts collide often: full-width / half-width / case variants,
# ASCII and ideographic spaces, and characters of the default payment/order keywords.
ALPHABET = ["a", "A", "Ａ", "ａ", "b", "好", "的", " ", "\u3000", "已", "付", "款", "拍", "了"]
CUSTOMERS = ["c1", "c2"]
NAMES = ["小明", "小红"]
SHOPS = ["shop_A", "shop_B"]

PROFILE = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# -- the reference: straight from the contract ------------------------------------------------------

def norm(s: str) -> str:
    """NFKC, trimmed; Latin letters compared case-insensitively (casefold)."""
    return unicodedata.normalize("NFKC", s).strip().casefold()


def reference_fires(trigger: dict, task_customer: str | None, ev: dict, task_acc: str | None = None) -> bool:
    """Does a task with `trigger` (task-level customer.id `task_customer`, acc_id `task_acc`) fire on `ev`?"""
    ttype = trigger["type"]
    if ttype == "time_reach":
        return False  # fires on its time only, never on an inbound event
    if task_acc is not None and ev["acc_id"] != task_acc:
        return False  # a task that names acc_id fires only on messages and events of that account
    if ttype == "custom_event":
        if ev["kind"] != "custom" or ev["event"] != trigger["event"]:
            return False
        for key, want in (trigger.get("match") or {}).items():
            if key not in ev["data"] or ev["data"][key] != want:
                return False
        return True
    # a reply / keyword / payment / order trigger: fired by what a customer sends
    if ev["kind"] == "custom":
        return False
    if ttype == "specified_customer_reply":
        if ev["from_id"] != trigger["customer_id"]:
            return False
        if trigger.get("customer_name") is not None and ev["from_name"] != trigger["customer_name"]:
            return False
    elif task_customer is not None and ev["from_id"] != task_customer:
        return False
    if ttype == "customer_payment" and ev["kind"] == "payment":
        return True
    if ttype == "customer_order" and ev["kind"] == "order":
        return True
    is_text = ev["kind"] == "message" and ev["msg_type"] == "text"
    if not is_text:
        return False
    said = norm(ev["content"])
    if ttype in ("specified_customer_reply", "customer_reply"):
        keyword = norm(trigger["keyword"])
        return said == keyword if trigger.get("exact_match", False) else keyword in said
    if ttype == "customer_keyword":
        words = trigger["keywords"]
    elif ttype == "customer_payment":
        words = trigger.get("keywords") or PAYMENT_DEFAULTS
    else:
        words = trigger.get("keywords") or ORDER_DEFAULTS
    return any(norm(w) in said for w in words)


# -- strategies --------------------------------------------------------------------------------------

texts = st.text(alphabet=ALPHABET, max_size=7)
keywords = st.text(alphabet=ALPHABET, min_size=1, max_size=3).filter(lambda s: s.strip())  # schema: not blank
match_values = st.sampled_from([1, 2, "1", "x", None])


@st.composite
def triggers(draw):
    ttype = draw(st.sampled_from(["specified_customer_reply", "customer_reply", "customer_keyword",
                                  "customer_payment", "customer_order", "time_reach", "custom_event"]))
    t: dict = {"type": ttype}
    if ttype == "specified_customer_reply":
        t["customer_id"] = draw(st.sampled_from(CUSTOMERS))
        if draw(st.booleans()):
            t["customer_name"] = draw(st.sampled_from(NAMES))
    if ttype in ("specified_customer_reply", "customer_reply"):
        t["keyword"] = draw(keywords)
        if draw(st.booleans()):
            t["exact_match"] = draw(st.booleans())
    elif ttype == "customer_keyword":
        t["keywords"] = draw(st.lists(keywords, min_size=1, max_size=4))
    elif ttype in ("customer_payment", "customer_order"):
        if draw(st.booleans()):
            t["keywords"] = draw(st.lists(keywords, min_size=1, max_size=3))
    elif ttype == "time_reach":
        t["time"] = "2030-01-01 00:00:00"
    else:
        t["event"] = draw(st.sampled_from(["e1", "e2"]))
        if draw(st.booleans()):
            t["match"] = draw(st.dictionaries(st.sampled_from(["a", "b"]), match_values, max_size=2))
    if ttype not in ("time_reach", "custom_event") and draw(st.booleans()):
        t["lookback_seconds"] = draw(st.sampled_from([0, 5, 60]))
    return t


@st.composite
def wire_events(draw):
    kind = draw(st.sampled_from(["message", "message", "message", "payment", "order", "custom"]))
    ev = {"kind": kind, "from_id": draw(st.sampled_from(CUSTOMERS)),
          "from_name": draw(st.sampled_from(NAMES + [None])), "acc_id": draw(st.sampled_from(SHOPS + [None])),
          "received_at": 1000.0}
    if kind == "message":
        ev["msg_type"] = draw(st.sampled_from(["text", "text", "text", "image"]))
        ev["content"] = draw(texts)
    if kind == "custom":
        ev["event"] = draw(st.sampled_from(["e1", "e2"]))
        ev["data"] = draw(st.dictionaries(st.sampled_from(["a", "b", "c"]), match_values, max_size=3))
    return ev


def to_event(ev: dict) -> InboundEvent:
    if ev["kind"] == "custom":
        return InboundEvent(kind="custom", event=ev["event"], from_id=ev["from_id"], data=ev["data"],
                            acc_id=ev.get("acc_id"), received_at=ev["received_at"])
    data = {"msg_id": "m-1", "acc_id": ev.get("acc_id", "shop"), "from_id": ev["from_id"],
            "from_name": ev["from_name"]}
    if ev["kind"] == "message":
        data.update(msg_type=ev["msg_type"], content=ev["content"])
    return InboundEvent.from_wire(ev["kind"], data, ev["received_at"])


def compile_(trigger: dict, task_customer: str | None, **kw) -> dict:
    return compile_spec(task_id=kw.get("task_id", "T"), trigger=trigger, customer_id=task_customer,
                        priority=kw.get("priority", "normal"), created_at=kw.get("created_at", 1000.0),
                        payment_keywords=PAYMENT_DEFAULTS, order_keywords=ORDER_DEFAULTS,
                        acc_id=kw.get("acc_id"))


task_customers = st.sampled_from([None, "c1", "c2"])
task_accs = st.sampled_from([None, "shop_A", "shop_B"])


# -- properties ----------------------------------------------------------------------------------

@PROFILE
@given(trigger=triggers(), task_customer=task_customers, task_acc=task_accs, ev=wire_events())
def test_matches_agrees_with_reference(trigger, task_customer, task_acc, ev):
    spec = compile_(trigger, task_customer, acc_id=task_acc)
    assert matches(spec, to_event(ev)) is reference_fires(trigger, task_customer, ev, task_acc)


@PROFILE
@given(trigger=triggers(), task_customer=task_customers, content=texts, from_id=st.sampled_from(CUSTOMERS),
       from_name=st.sampled_from(NAMES))
def test_matches_agrees_with_reference_on_text(trigger, task_customer, content, from_id, from_name):
    # The same comparison, restricted to text messages, so keyword collisions get most of the examples.
    ev = {"kind": "message", "msg_type": "text", "content": content, "from_id": from_id,
          "from_name": from_name, "received_at": 1000.0}
    spec = compile_(trigger, task_customer)
    assert matches(spec, to_event(ev)) is reference_fires(trigger, task_customer, ev)


@PROFILE
@given(keyword=keywords, content=texts, exact=st.booleans())
def test_width_and_case_variants_fire_alike(keyword, content, exact):
    """Swapping every Latin letter for its full-width / other-case form changes nothing."""
    swap = str.maketrans({"a": "Ａ", "A": "ａ", "Ａ": "a", "ａ": "A", "\u3000": " ", " ": "\u3000"})
    trigger = {"type": "customer_reply", "keyword": keyword, "exact_match": exact}
    a = compile_(trigger, None)
    b = compile_({**trigger, "keyword": keyword.translate(swap)}, None)
    ev = {"kind": "message", "msg_type": "text", "content": content, "from_id": "c1", "from_name": None,
          "received_at": 1000.0}
    ev_swapped = {**ev, "content": content.translate(swap)}
    results = {matches(s, to_event(e)) for s in (a, b) for e in (ev, ev_swapped)}
    assert len(results) == 1


@PROFILE
@given(trigger=triggers(), task_customer=task_customers, ev=wire_events())
def test_index_never_misses_a_matching_task(trigger, task_customer, ev):
    spec = compile_(trigger, task_customer)
    event = to_event(ev)
    if not matches(spec, event):
        return
    keys = index_keys(spec)
    if event.kind == "custom":
        assert ("ce", event.event) in keys
        return
    by_customer = ("cust", event.from_id) in keys
    lengths = [len(k) for k in spec.get("k", [])]
    by_keyword = event.text is not None and any(("kw", probe) in keys for probe in substrings(event.text, lengths))
    by_event_kind = event.kind in ("payment", "order") and ("evt", event.kind) in keys
    assert by_customer or by_keyword or by_event_kind, (spec, event, keys)


@PROFILE
@given(trigger=triggers(), task_customer=task_customers)
def test_bound_tasks_are_filed_only_under_their_customer(trigger, task_customer):
    spec = compile_(trigger, task_customer)
    keys = index_keys(spec)
    ttype = trigger["type"]
    bound = trigger["customer_id"] if ttype == "specified_customer_reply" else task_customer
    if ttype == "time_reach":
        assert keys == []
    elif ttype == "custom_event":
        assert keys == [("ce", trigger["event"])]
    elif bound:
        assert keys == [("cust", bound)]
    else:
        assert all(kind in ("kw", "evt") for kind, _ in keys)
        assert all(value == norm(value) and value for kind, value in keys if kind == "kw")


@PROFILE
@given(text=texts, lengths=st.lists(st.integers(min_value=-1, max_value=9), max_size=4))
def test_substrings_reference(text, lengths):
    expected = {text[i:i + n] for n in lengths if n > 0 for i in range(len(text) - n + 1)}
    got = list(substrings(text, lengths))
    assert set(got) == expected
    assert all(len(s) in lengths for s in got)


@PROFILE
@given(st.lists(st.tuples(st.sampled_from(["urgent", "high", "normal", "low"]),
                          st.floats(min_value=0, max_value=1e6, allow_nan=False),
                          st.text(alphabet="ABC", min_size=1, max_size=3)), max_size=8))
def test_firing_order_reference(rows):
    rank = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
    specs = [compile_({"type": "customer_reply", "keyword": "x"}, None, task_id=i, priority=p, created_at=ts)
             for p, ts, i in rows]
    ordered = firing_order(specs)
    assert sorted(map(id, ordered)) == sorted(map(id, specs))
    keys = [(s["p"], s["ts"]) for s in ordered]
    assert keys == sorted(keys)
    assert [s["p"] for s in ordered] == sorted(rank[p] for p, _, _ in rows)


@PROFILE
@given(lookback=st.integers(min_value=0, max_value=3600), created=st.integers(min_value=10**6, max_value=2 * 10**9),
       delta=st.integers(min_value=-7200, max_value=7200))
def test_within_lookback_reference(lookback, created, delta):
    spec = compile_({"type": "customer_reply", "keyword": "x", "lookback_seconds": lookback}, None,
                    created_at=created)
    received = created + delta
    ev = to_event({"kind": "message", "msg_type": "text", "content": "x", "from_id": "c1", "from_name": None,
                   "received_at": received})
    # after (or at) the task's arrival always counts; before it, only within lookback_seconds
    expected = received >= created or created - received <= lookback
    assert within_lookback(spec, ev) is expected


# -- explain: the same verdict as the matcher ----------------------------------------------------------

WAITING = ex.TaskState(status="waiting", created_at=1000.0, expires_at=10**9)
states_ = st.sampled_from([
    WAITING,
    ex.TaskState(status="pending", created_at=1000.0, expires_at=10**9),
    ex.TaskState(status="waiting", created_at=1000.0, expires_at=990.0),  # deadline already passed
    ex.TaskState(status="cancelled", created_at=1000.0, expires_at=10**9, completed_at=950.0),
    ex.TaskState(status="completed", created_at=1000.0, expires_at=10**9, triggered_at=990.0,
                 triggered_by={"kind": "message", "msg_id": "m-0"}),
])


@PROFILE
@given(trigger=triggers(), task_customer=task_customers, task_acc=task_accs, ev=wire_events(),
       received_at=st.sampled_from([900.0, 940.0, 995.0, 1000.0, 1001.0]))
def test_explain_fires_exactly_when_the_matcher_does(trigger, task_customer, task_acc, ev, received_at):
    spec = compile_(trigger, task_customer, acc_id=task_acc)
    event = to_event({**ev, "received_at": received_at})
    fires = matches(spec, event) and (spec["t"] not in MESSAGE_TRIGGERS or within_lookback(spec, event))
    told = ex.explain(spec, WAITING, event, now=2000.0)
    assert told.matched is fires
    assert (told.outcome == ex.WOULD_FIRE) is fires, told
    assert (told.conclusion == "would fire") is fires
    if not fires:  # and it names at least one reason
        assert told.conclusion.startswith("did not: ") and any(c.verdict == ex.FAIL for c in told.conditions)


@PROFILE
@given(trigger=triggers(), task_customer=task_customers, task_acc=task_accs, ev=wire_events(), state=states_)
def test_explain_says_would_fire_only_for_a_waiting_task_before_its_deadline(
        trigger, task_customer, task_acc, ev, state):
    spec = compile_(trigger, task_customer, acc_id=task_acc)
    event = to_event(ev)
    told = ex.explain(spec, state, event, now=2000.0)
    assert told.matched is (matches(spec, event) and (spec["t"] not in MESSAGE_TRIGGERS
                                                      or within_lookback(spec, event)))
    listening = state.status == "waiting" and event.received_at < state.expires_at
    assert (told.outcome == ex.WOULD_FIRE) is (told.matched and listening)
