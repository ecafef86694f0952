"""Trigger matching, one trigger type at a time (CONTRACTS.md §1 "Trigger types", §2 inbound frames)."""
from __future__ import annotations

import pytest

from app.domain import probes
from app.domain import triggers as tr
from app.domain.events import InboundEvent, normalize
from app.domain.triggers import compile_spec, index_keys, matches, within_lookback

# The contract's default lists (CONTRACTS.md §1), written out here, not imported from the code.
PAYMENT_DEFAULTS = ("已付款", "已支付", "拍下了", "付过了")
ORDER_DEFAULTS = ("已下单", "下单了", "拍了")


def spec(trigger: dict, customer_id: str | None = None, *, task_id="T1", priority="normal",
         created_at=1000.0, acc_id: str | None = None) -> dict:
    return compile_spec(task_id=task_id, trigger=trigger, customer_id=customer_id, priority=priority,
                        created_at=created_at, payment_keywords=PAYMENT_DEFAULTS,
                        order_keywords=ORDER_DEFAULTS, acc_id=acc_id)


def text(content: str, from_id="customer_123", from_name="小明", *, msg_type="text", received_at=1000.0,
         msg_id="m-1", acc_id="shop_001") -> InboundEvent:
    return InboundEvent.from_wire("message", {
        "msg_id": msg_id, "acc_id": acc_id, "acc_type": "AliWorkbench", "from_id": from_id,
        "from_name": from_name, "msg_type": msg_type, "content": content, "ts": 1772241600,
    }, received_at)


def payment(from_id="customer_123", from_name="小明", received_at=1000.0, acc_id="shop_001") -> InboundEvent:
    return InboundEvent.from_wire("payment", {
        "msg_id": "p-1", "acc_id": acc_id, "from_id": from_id, "from_name": from_name,
        "order_id": "O-9", "amount": "68.00", "ts": 1772241600}, received_at)


def order(from_id="customer_123", from_name="小明", received_at=1000.0, acc_id="shop_001") -> InboundEvent:
    return InboundEvent.from_wire("order", {
        "msg_id": "o-1", "acc_id": acc_id, "from_id": from_id, "from_name": from_name,
        "order_id": "O-9", "ts": 1772241600}, received_at)


def custom(name: str, data: dict | None = None, from_id: str | None = "customer_123",
           acc_id: str | None = None) -> InboundEvent:
    return InboundEvent(kind="custom", event=name, from_id=from_id, acc_id=acc_id, data=data or {},
                        received_at=1000.0)


def test_config_defaults_are_the_contract_lists():
    from app.config import DEFAULT_ORDER_KEYWORDS, DEFAULT_PAYMENT_KEYWORDS, Settings

    assert tuple(DEFAULT_PAYMENT_KEYWORDS) == PAYMENT_DEFAULTS
    assert tuple(DEFAULT_ORDER_KEYWORDS) == ORDER_DEFAULTS
    settings = Settings(database_url="sqlite://", redis_url="redis://unused", celery_broker_url="memory://",
                        celery_result_backend="cache+memory://")
    assert tuple(settings.payment_keywords) == PAYMENT_DEFAULTS
    assert tuple(settings.order_keywords) == ORDER_DEFAULTS


# -- normalize ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("ＯＫ", "ok"),                 # full-width Latin -> half-width, lower case
    ("ok", "ok"),
    ("OK", "ok"),
    ("Ｏｋ", "ok"),
    ("１２３", "123"),              # full-width digits
    ("  好的  ", "好的"),            # trimmed
    ("\u3000好的\u3000", "好的"),    # ideographic (full-width) space trimmed
    ("\t好的\n", "好的"),
    ("好　的", "好 的"),             # inner full-width space becomes an ordinary space, kept
    ("ｶﾞ", "ガ"),                   # half-width katakana -> full-width
    ("", ""),
    ("   ", ""),
    ("！？", "!?"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_normalize_is_idempotent_on_examples():
    for raw in ["ＡＢＣ　ｄｅｆ", " 已付款 ", "Hello World", "ﾊﾟｿｺﾝ"]:
        once = normalize(raw)
        assert normalize(once) == once


# -- InboundEvent.from_wire ---------------------------------------------------------------------

def test_from_wire_text_message_is_normalised_and_keeps_fields():
    ev = text("  ＯＫ好的 ", received_at=123.5, msg_id="m-7")
    assert ev.kind == "message"
    assert ev.text == "ok好的"
    assert (ev.msg_id, ev.acc_id, ev.from_id, ev.from_name) == ("m-7", "shop_001", "customer_123", "小明")
    assert ev.received_at == 123.5


@pytest.mark.parametrize("msg_type", ["image", "file", "voice", "video", "link"])
def test_from_wire_non_text_message_has_no_text(msg_type):
    ev = text("https://img.example.com/好的.png", msg_type=msg_type)
    assert ev.kind == "message" and ev.text is None


def test_from_wire_non_text_may_lack_content():
    ev = InboundEvent.from_wire("message", {"msg_id": "m", "from_id": "c", "msg_type": "image"}, 1.0)
    assert ev.text is None


@pytest.mark.parametrize("kind", ["payment", "order"])
def test_from_wire_payment_and_order_have_no_text(kind):
    ev = InboundEvent.from_wire(kind, {"msg_id": "p", "from_id": "c", "content": "已付款"}, 1.0)
    assert ev.kind == kind and ev.text is None and ev.from_id == "c"


@pytest.mark.parametrize("frame_event,data", [
    ("send_result", {"req_id": "x", "ok": True}),
    ("pong", {}),
    ("custom", {"from_id": "c"}),
    ("message", ["not", "an", "object"]),
    ("message", "string"),
    ("message", None),
    ("message", {"msg_id": "m", "msg_type": "text", "content": "hi"}),                 # no from_id
    ("message", {"msg_id": "m", "from_id": "", "msg_type": "text", "content": "hi"}),  # empty from_id
    ("message", {"msg_id": "m", "from_id": 123, "msg_type": "text", "content": "hi"}),
    ("message", {"msg_id": "m", "from_id": None, "msg_type": "text", "content": "hi"}),
    ("message", {"msg_id": "m", "from_id": "c", "msg_type": "text"}),                  # no content
    ("message", {"msg_id": "m", "from_id": "c", "msg_type": "text", "content": None}),
    ("message", {"msg_id": "m", "from_id": "c", "msg_type": "text", "content": 42}),
    ("message", {"msg_id": "m", "from_id": "c", "msg_type": "text", "content": ["好的"]}),
    ("payment", {"msg_id": "p"}),
    ("order", {"from_id": ""}),
])
def test_from_wire_rejects_malformed_data(frame_event, data):
    with pytest.raises(ValueError):
        InboundEvent.from_wire(frame_event, data, 1.0)


def test_from_wire_drops_non_string_optional_fields():
    ev = InboundEvent.from_wire("message", {"msg_id": ["x"], "acc_id": {"a": 1}, "from_id": "c",
                                            "from_name": 5.5, "msg_type": "text", "content": "hi"}, 1.0)
    assert ev.msg_id is None and ev.acc_id is None and ev.from_name is None
    assert ev.text == "hi"


def test_event_dict_round_trip():
    for ev in (text("ＯＫ"), payment(), order(), custom("paid", {"a": 1})):
        assert InboundEvent.from_dict(ev.as_dict()) == ev


# -- specified_customer_reply ---------------------------------------------------------------------

SCR = {"type": "specified_customer_reply", "customer_id": "customer_123", "customer_name": "小明",
       "keyword": "好的", "exact_match": False}


def test_scr_fires_on_that_customer_containing_keyword():
    s = spec(SCR)
    assert matches(s, text("好的谢谢"))
    assert matches(s, text("嗯 好的"))
    assert not matches(s, text("不用了"))


def test_scr_other_customer_does_not_fire():
    assert not matches(spec(SCR), text("好的", from_id="customer_999"))


def test_scr_customer_name_must_equal_when_given():
    s = spec(SCR)
    assert not matches(s, text("好的", from_name="小红"))
    assert not matches(s, text("好的", from_name=None))
    without_name = spec({k: v for k, v in SCR.items() if k != "customer_name"})
    assert matches(without_name, text("好的", from_name="小红"))
    assert matches(without_name, text("好的", from_name=None))


def test_scr_binding_comes_from_trigger_customer_id_not_customer_id():
    # "For specified_customer_reply, trigger.customer_id decides."
    s = spec(SCR, customer_id="someone_else")
    assert matches(s, text("好的", from_id="customer_123"))
    assert not matches(s, text("好的", from_id="someone_else"))
    assert index_keys(s) == [("cust", "customer_123")]


def test_scr_exact_match():
    s = spec({**SCR, "exact_match": True})
    assert matches(s, text("好的"))
    assert matches(s, text("  好的 "))
    assert matches(s, text("\u3000好的"))
    assert not matches(s, text("好的谢谢"))
    assert not matches(s, text("好"))


def test_scr_exact_match_full_width_and_case():
    s = spec({**SCR, "keyword": "OK", "exact_match": True})
    assert matches(s, text("ok"))
    assert matches(s, text("ＯＫ"))
    assert matches(s, text("ｏｋ "))
    assert not matches(s, text("okay"))


def test_scr_contains_full_width_keyword():
    s = spec({**SCR, "keyword": "Ｙｅｓ"})
    assert matches(s, text("YES, please"))
    assert matches(s, text("oh yes"))
    assert not matches(s, text("ye s"))


def test_scr_ignores_non_text_and_events():
    s = spec(SCR)
    assert not matches(s, text("好的.png", msg_type="image"))
    assert not matches(s, payment())
    assert not matches(s, order())
    assert not matches(s, custom("好的"))


# -- customer_reply -------------------------------------------------------------------------------

CR = {"type": "customer_reply", "keyword": "收到"}


def test_cr_any_customer_without_customer_id():
    s = spec(CR, None)
    assert matches(s, text("收到了", from_id="a"))
    assert matches(s, text("已收到", from_id="b", from_name=None))
    assert not matches(s, text("没有", from_id="a"))
    assert index_keys(s) == [("kw", "收到")]


def test_cr_bound_by_customer_id():
    s = spec(CR, "customer_123")
    assert matches(s, text("收到", from_id="customer_123"))
    assert not matches(s, text("收到", from_id="customer_456"))
    assert index_keys(s) == [("cust", "customer_123")]


def test_cr_exact_match_optional():
    assert spec(CR)["x"] is False
    s = spec({**CR, "exact_match": True})
    assert matches(s, text("收到"))
    assert not matches(s, text("收到了"))


def test_cr_non_text_never_fires():
    s = spec(CR)
    assert not matches(s, text("收到", msg_type="image"))
    assert not matches(s, payment())


# -- customer_keyword -----------------------------------------------------------------------------

CK = {"type": "customer_keyword", "keywords": ["发票", "Invoice", "ＰＤＦ"]}


@pytest.mark.parametrize("content", ["我要发票", "INVOICE please", "pdf版", "ＩＮＶＯＩＣＥ", "要 PDF"])
def test_ck_fires_on_any_keyword(content):
    assert matches(spec(CK), text(content))


@pytest.mark.parametrize("content", ["发 票", "invo ice", "谢谢", ""])
def test_ck_no_keyword_no_fire(content):
    assert not matches(spec(CK), text(content))


def test_ck_keywords_normalised_and_deduplicated():
    s = spec({"type": "customer_keyword", "keywords": ["OK", "ＯＫ", " ok ", "好"]})
    assert s["k"] == ["ok", "好"]
    assert index_keys(s) == [("kw", "ok"), ("kw", "好")]


def test_ck_bound_by_customer_id_and_non_text():
    s = spec(CK, "customer_123")
    assert matches(s, text("发票", from_id="customer_123"))
    assert not matches(s, text("发票", from_id="other"))
    assert not matches(s, text("发票", msg_type="file"))


# -- customer_payment / customer_order --------------------------------------------------------------

@pytest.mark.parametrize("trigger_type,event_factory,other_factory,defaults", [
    ("customer_payment", payment, order, PAYMENT_DEFAULTS),
    ("customer_order", order, payment, ORDER_DEFAULTS),
])
def test_event_triggers(trigger_type, event_factory, other_factory, defaults):
    s = spec({"type": trigger_type})
    assert matches(s, event_factory())
    assert matches(s, event_factory(from_id="anyone"))
    assert not matches(s, other_factory())
    for word in defaults:
        assert matches(s, text(f"亲，{word}，请发货"))
    assert not matches(s, text("请问什么时候发货"))
    assert not matches(s, text(defaults[0], msg_type="image"))
    assert not matches(s, custom(trigger_type.split("_")[1]))
    kind = trigger_type.split("_")[1]
    keys = index_keys(s)
    assert ("evt", kind) in keys
    assert {k for k in keys if k[0] == "kw"} == {("kw", w) for w in defaults}


@pytest.mark.parametrize("trigger_type,event_factory", [
    ("customer_payment", payment), ("customer_order", order)])
def test_event_triggers_bound_by_customer(trigger_type, event_factory):
    s = spec({"type": trigger_type}, "customer_123")
    assert matches(s, event_factory(from_id="customer_123"))
    assert not matches(s, event_factory(from_id="customer_456"))
    assert index_keys(s) == [("cust", "customer_123")]


def test_payment_custom_keywords_replace_defaults():
    s = spec({"type": "customer_payment", "keywords": ["转账了", "ＰＡＩＤ"]})
    assert matches(s, text("我转账了"))
    assert matches(s, text("paid!"))
    assert not matches(s, text("已付款"))
    assert matches(s, payment())


def test_payment_empty_keywords_use_defaults():
    s = spec({"type": "customer_payment", "keywords": []})
    assert matches(s, text("已支付"))


# -- time_reach / custom_event ------------------------------------------------------------------

def test_time_reach_never_matches_events():
    s = spec({"type": "time_reach", "time": "2030-01-01 10:00:00"}, "customer_123")
    for ev in (text("好的"), text("已付款"), payment(), order(), custom("time_reach"),
               text("x", msg_type="image")):
        assert not matches(s, ev)
    assert index_keys(s) == []


def test_custom_event_name_and_match():
    s = spec({"type": "custom_event", "event": "design_done", "match": {"order_id": "O-9", "n": 2}})
    assert matches(s, custom("design_done", {"order_id": "O-9", "n": 2, "extra": "ok"}))
    assert not matches(s, custom("design_done", {"order_id": "O-9"}))            # key missing
    assert not matches(s, custom("design_done", {"order_id": "O-8", "n": 2}))     # value differs
    assert not matches(s, custom("design_done", {"order_id": "O-9", "n": "2"}))   # type differs
    assert not matches(s, custom("other", {"order_id": "O-9", "n": 2}))
    assert index_keys(s) == [("ce", "design_done")]


def test_custom_event_without_match_fires_on_any_data():
    s = spec({"type": "custom_event", "event": "ping"})
    assert matches(s, custom("ping"))
    assert matches(s, custom("ping", {"a": 1}, from_id=None))
    assert not matches(s, text("ping"))
    assert not matches(s, payment())


def test_custom_event_match_on_null_needs_the_key():
    s = spec({"type": "custom_event", "event": "e", "match": {"a": None}})
    assert matches(s, custom("e", {"a": None}))
    assert not matches(s, custom("e", {}))


def test_custom_event_match_distinguishes_booleans_from_numbers():
    s = spec({"type": "custom_event", "event": "e", "match": {"paid": True}})
    assert matches(s, custom("e", {"paid": True}))
    assert not matches(s, custom("e", {"paid": 1}))


def test_message_triggers_never_fire_on_custom_events():
    for trigger in (SCR, CR, CK, {"type": "customer_payment"}, {"type": "customer_order"}):
        assert not matches(spec(trigger), custom("好的", {"content": "好的"}))


# -- within_lookback ----------------------------------------------------------------------------

def test_lookback_window():
    s = spec({**CR, "lookback_seconds": 30}, created_at=1000.0)
    assert s["lb"] == 30.0
    assert within_lookback(s, text("收到", received_at=970.0))
    assert within_lookback(s, text("收到", received_at=985.0))
    assert not within_lookback(s, text("收到", received_at=969.9))
    assert within_lookback(s, text("收到", received_at=1000.0))
    assert within_lookback(s, text("收到", received_at=5000.0))


def test_lookback_default_zero():
    s = spec(CR, created_at=1000.0)
    assert s["lb"] == 0.0
    assert not within_lookback(s, text("收到", received_at=999.99))
    assert within_lookback(s, text("收到", received_at=1000.0))


# -- compile_spec / priority ----------------------------------------------------------------------

@pytest.mark.parametrize("priority,rank", [("urgent", 0), ("high", 1), ("normal", 2), ("low", 3)])
def test_spec_priority_rank(priority, rank):
    assert spec(CR, priority=priority)["p"] == rank


def test_spec_is_json_round_trippable():
    import json

    for trigger in (SCR, CR, CK, {"type": "customer_payment"}, {"type": "time_reach", "time": "x"},
                    {"type": "custom_event", "event": "e", "match": {"a": [1, 2]}}):
        s = spec(trigger, "customer_123")
        assert json.loads(json.dumps(s, ensure_ascii=False)) == s


def test_trigger_type_constants_match_contract():
    assert set(tr.TRIGGER_TYPES) == {"specified_customer_reply", "customer_reply", "customer_keyword",
                                     "customer_payment", "customer_order", "time_reach", "custom_event"}


# -- substrings -------------------------------------------------------------------------------------

def test_substrings_examples():
    assert list(probes.substrings("abcd", [2])) == ["ab", "bc", "cd"]
    assert set(probes.substrings("abcd", [1, 4, 2, 2])) == {"a", "b", "c", "d", "ab", "bc", "cd", "abcd"}
    assert list(probes.substrings("abc", [0, -1, 4])) == []
    assert list(probes.substrings("", [1, 2])) == []
    assert list(probes.substrings("好的谢谢", [])) == []
    assert list(probes.substrings("好的谢谢", ["2"])) == ["好的", "的谢", "谢谢"]


def test_substrings_is_every_substring_of_those_lengths():
    s = "ab好的 ab"
    lengths = [1, 2, 3, 7, 9]
    expected = {s[i:j] for i in range(len(s)) for j in range(i + 1, len(s) + 1) if j - i in lengths}
    assert set(probes.substrings(s, lengths)) == expected


# -- firing_order ---------------------------------------------------------------------------------

def test_firing_order_priority_then_oldest():
    specs = [
        spec(CR, task_id="low-old", priority="low", created_at=1.0),
        spec(CR, task_id="normal-new", priority="normal", created_at=50.0),
        spec(CR, task_id="urgent-new", priority="urgent", created_at=99.0),
        spec(CR, task_id="normal-old", priority="normal", created_at=10.0),
        spec(CR, task_id="high", priority="high", created_at=60.0),
        spec(CR, task_id="urgent-old", priority="urgent", created_at=5.0),
    ]
    assert [s["id"] for s in tr.firing_order(specs)] == [
        "urgent-old", "urgent-new", "high", "normal-old", "normal-new", "low-old"]


def test_firing_order_ties_are_deterministic():
    a = spec(CR, task_id="A", created_at=1.0)
    b = spec(CR, task_id="B", created_at=1.0)
    assert [s["id"] for s in tr.firing_order([b, a])] == ["A", "B"]
    assert [s["id"] for s in tr.firing_order([a, b])] == ["A", "B"]


# -- shop scoping: acc_id (CONTRACTS.md §1 "acc_id") -------------------------------------------------

MESSAGE_TRIGGER_CASES = [  # (trigger, a message that fires it when the shop is right)
    (SCR, lambda acc: text("好的", acc_id=acc)),
    (CR, lambda acc: text("收到", acc_id=acc)),
    (CK, lambda acc: text("发票", acc_id=acc)),
    ({"type": "customer_payment"}, lambda acc: text("已付款", acc_id=acc)),
    ({"type": "customer_payment"}, lambda acc: payment(acc_id=acc)),
    ({"type": "customer_order"}, lambda acc: text("已下单", acc_id=acc)),
    ({"type": "customer_order"}, lambda acc: order(acc_id=acc)),
]


@pytest.mark.parametrize("trigger,event_on", MESSAGE_TRIGGER_CASES)
@pytest.mark.parametrize("customer_id", [None, "customer_123"])
def test_a_task_naming_acc_id_fires_only_on_that_shop(trigger, event_on, customer_id):
    s = spec(trigger, customer_id, acc_id="shop_A")
    assert s["a"] == "shop_A"
    assert matches(s, event_on("shop_A"))
    assert not matches(s, event_on("shop_B"))  # the same customer id on another shop is another customer
    assert not matches(s, event_on(None))  # a message that names no shop is not of that shop


@pytest.mark.parametrize("trigger,event_on", MESSAGE_TRIGGER_CASES)
def test_a_task_without_acc_id_fires_on_any_shop(trigger, event_on):
    s = spec(trigger, "customer_123")
    assert "a" not in s
    for acc in ("shop_A", "shop_B", None):
        assert matches(s, event_on(acc))


def test_custom_events_follow_the_same_shop_rule():
    bound = spec({"type": "custom_event", "event": "paid", "match": {"n": 1}}, acc_id="shop_A")
    assert matches(bound, custom("paid", {"n": 1}, acc_id="shop_A"))
    assert not matches(bound, custom("paid", {"n": 1}, acc_id="shop_B"))
    assert not matches(bound, custom("paid", {"n": 1}, acc_id=None))
    free = spec({"type": "custom_event", "event": "paid"})
    assert all(matches(free, custom("paid", acc_id=acc)) for acc in ("shop_A", "shop_B", None))


def test_acc_id_changes_neither_the_index_nor_time_reach():
    for trigger, customer in ((SCR, None), (CR, None), (CK, "customer_123"), ({"type": "customer_payment"}, None),
                              ({"type": "custom_event", "event": "e"}, None)):
        assert index_keys(spec(trigger, customer, acc_id="shop_A")) == index_keys(spec(trigger, customer))
    timer = spec({"type": "time_reach", "time": "2030-01-01 10:00:00"}, "customer_123", acc_id="shop_001")
    assert not any(matches(timer, ev) for ev in (text("好的"), payment(), custom("e", acc_id="shop_001")))


# -- the named checks behind matches() -------------------------------------------------------------

def test_each_trigger_type_has_its_checks_in_order():
    names = {kind: [c.condition for c in checks] for kind, checks in tr.CHECKS.items()}
    by_message = ["message_type", "shop", "customer_id", "keyword"]
    assert names == {
        "specified_customer_reply": ["message_type", "shop", "customer_id", "customer_name", "keyword"],
        "customer_reply": by_message, "customer_keyword": by_message,
        "customer_payment": by_message, "customer_order": by_message,
        "time_reach": ["message_type"],
        "custom_event": ["message_type", "shop", "event_name", "event_data"],
    }
    assert tr.check_lookback.condition == "lookback"


def test_checks_report_their_verdict_and_the_values_they_compared():
    s = spec({**SCR, "keyword": "ＯＫ", "exact_match": True, "lookback_seconds": 30}, acc_id="shop_A",
             created_at=1000.0)
    ev = text(" ok ", from_name="小红", acc_id="shop_A", received_at=990.0)
    seen = {c.condition: (c(s, ev), *c.compared(s, ev)) for c in tr.CHECKS[s["t"]] + (tr.check_lookback,)}
    assert seen == {
        "message_type": (True, ("text",), "text"),
        "shop": (True, "shop_A", "shop_A"),
        "customer_id": (True, "customer_123", "customer_123"),
        "customer_name": (False, "小明", "小红"),
        "keyword": (True, {"keywords": ["ok"], "match": "exact"}, "ok"),  # both normalised
        "lookback": (True, 30.0, 10.0),  # 10 s before the task, within 30
    }


def test_not_applicable_checks_never_stop_a_match():
    assert tr.NOT_APPLICABLE  # truthy, so `all checks pass` ignores it
    any_customer = spec(CR)
    ev = text("收到")
    assert tr.check_shop(any_customer, ev) == tr.NOT_APPLICABLE
    assert tr.check_customer_id(any_customer, ev) == tr.NOT_APPLICABLE
    assert tr.check_keyword(spec({"type": "customer_payment"}), payment()) == tr.NOT_APPLICABLE
    assert tr.check_keyword(spec({"type": "customer_payment"}), order()) is False
    assert tr.check_event_data(spec({"type": "custom_event", "event": "e"}), custom("e")) == tr.NOT_APPLICABLE
    assert matches(any_customer, ev)


@pytest.mark.parametrize("trigger", [SCR, CR, CK, {"type": "customer_payment"}, {"type": "customer_order"},
                                     {"type": "time_reach", "time": "x"},
                                     {"type": "custom_event", "event": "e", "match": {"a": 1}}])
@pytest.mark.parametrize("acc_id", [None, "shop_001"])
def test_matches_is_every_check_passing(trigger, acc_id):
    s = spec(trigger, "customer_123", acc_id=acc_id)
    events = [text("好的"), text("收到发票已付款"), text("嗯", from_name="小红"), text("已下单", acc_id="shop_2"),
              text("a.png", msg_type="image"), payment(), order(acc_id="x"), custom("e", {"a": 1}, acc_id="shop_001"),
              custom("e", {"a": 2}), custom("f", {"a": 1}, acc_id="shop_001")]
    for ev in events:
        assert matches(s, ev) is all(check(s, ev) for check in tr.CHECKS[s["t"]]), ev


@pytest.mark.parametrize("ev,expected", [
    (text("好的"), "text"),
    (text("a.png", msg_type="image"), "image"),
    (text("a.zip", msg_type="file"), "file"),
    (InboundEvent.from_wire("message", {"from_id": "c", "msg_type": 7}, 1.0), "non-text"),
    (payment(), "payment"),
    (order(), "order"),
    (custom("e"), "custom"),
])
def test_message_type(ev, expected):
    assert ev.message_type == expected


def test_msg_type_is_kept_and_old_remembered_messages_still_match():
    ev = text("a.png", msg_type="image")
    assert ev.msg_type == "image" and InboundEvent.from_dict(ev.as_dict()).msg_type == "image"
    # A message remembered (recent:*) before msg_type was recorded has no such key.
    old = {k: v for k, v in text("好的").as_dict().items() if k != "msg_type"}
    assert matches(spec(SCR), InboundEvent.from_dict(old))
    old_image = {k: v for k, v in text("好的.png", msg_type="image").as_dict().items() if k != "msg_type"}
    assert not matches(spec(SCR), InboundEvent.from_dict(old_image))


def test_a_long_message_is_matched_on_its_first_characters_whoever_finds_the_task():
    """Matching reads a text's first MAX_PROBED_CHARS characters, for a task found by its customer as for
    one found by keyword (the index probes read no further), so the two ways never disagree."""
    from app.domain.probes import MAX_PROBED_CHARS
    from app.domain.events import message_text

    early = message_text("好的" + "。" * (MAX_PROBED_CHARS + 100))
    late = message_text("。" * MAX_PROBED_CHARS + "好的")
    assert len(early) == MAX_PROBED_CHARS and "好的" in early
    assert "好的" not in late
    bound = compile_spec(task_id="T", trigger={"type": "customer_reply", "keyword": "好的"}, customer_id="c1",
                         priority="normal", created_at=0.0, payment_keywords=(), order_keywords=())
    message = InboundEvent.from_wire("message", {"from_id": "c1", "content": "。" * MAX_PROBED_CHARS + "好的"}, 1.0)
    assert not matches(bound, message)
