"""The explanation of one task against one message (app.domain.explain), condition by condition."""
from __future__ import annotations

import pytest

from app.domain import explain as ex
from tests.unit.test_triggers import CK, CR, SCR, custom, order, payment, spec, text

WAITING = ex.TaskState(status="waiting", created_at=1000.0, expires_at=1000.0 + 86400)


def when(ts: float) -> str:
    return f"t{ts:g}"


def told(s: dict, ev, state: ex.TaskState = WAITING, **kw) -> ex.Explanation:
    return ex.explain(s, state, ev, now=kw.pop("now", 5000.0), when=when, **kw)


def table(explanation: ex.Explanation) -> dict:
    return {c.name: (c.verdict, c.expected, c.actual) for c in explanation.conditions}


def note(explanation: ex.Explanation, name: str) -> str:
    return next(c.note for c in explanation.conditions if c.name == name)


# -- the conditions of a message --------------------------------------------------------------------

def test_every_condition_is_listed_in_order_with_what_it_compared():
    s = spec({**SCR, "lookback_seconds": 60}, acc_id="shop_001")
    e = told(s, text("好的谢谢", received_at=1010.0))
    assert [c.name for c in e.conditions] == ["status", "message_type", "shop", "customer_id", "customer_name",
                                              "keyword", "lookback", "deadline"]
    assert table(e) == {
        "status": ("pass", "waiting", "waiting"),
        "message_type": ("pass", ("text",), "text"),
        "shop": ("pass", "shop_001", "shop_001"),
        "customer_id": ("pass", "customer_123", "customer_123"),
        "customer_name": ("pass", "小明", "小明"),
        "keyword": ("pass", {"keywords": ["好的"], "match": "contains"}, "好的谢谢"),
        "lookback": ("pass", 60.0, -10.0),
        "deadline": ("pass", "t87400", "t1010"),
    }
    assert (e.outcome, e.conclusion, e.matched) == ("would_fire", "would fire", True)


def test_the_wrong_name_is_the_conclusion():
    e = told(spec(SCR), text("好的", from_name="小红", received_at=1010.0))
    assert e.conclusion == "did not: the name was 小红, the task wants 小明"
    assert e.outcome == "would_not_fire" and not e.matched
    assert [c.name for c in e.conditions if c.verdict == "fail"] == ["customer_name"]


def test_every_failure_is_in_the_conclusion_and_passes_are_not():
    e = told(spec(SCR, acc_id="shop_A"), text("不用了", from_id="c9", acc_id="shop_B", received_at=1010.0))
    assert e.conclusion == ('did not: the shop was shop_B, the task wants shop_A; the customer was c9, the task '
                            'wants customer_123; the text "不用了" does not contain "好的"')


def test_a_message_naming_no_shop_or_name():
    e = told(spec(SCR, acc_id="shop_A"), text("好的", from_name=None, acc_id=None, received_at=1010.0))
    assert note(e, "shop") == "the message names no shop, the task wants shop_A"
    assert note(e, "customer_name") == "the message carries no name, the task wants 小明"


def test_not_applicable_conditions_say_so():
    e = told(spec(CK), text("发票", received_at=1010.0))
    assert table(e)["shop"] == ("not_applicable", None, "shop_001")
    assert table(e)["customer_id"] == ("not_applicable", None, "customer_123")
    assert note(e, "shop") == "the task names no shop: any shop"
    assert note(e, "customer_id") == "any customer"
    assert e.outcome == "would_fire"


def test_message_type_image_and_events():
    e = told(spec(CR), text("收到.png", msg_type="image", received_at=1010.0))
    assert table(e)["message_type"] == ("fail", ("text",), "image")
    assert e.conclusion.startswith("did not: this was a message of type image, the task wants a text message")
    assert note(e, "keyword") == "no text to look for a keyword in"
    paid = told(spec({"type": "customer_payment"}), payment(received_at=1010.0))
    assert table(paid)["keyword"][0] == "not_applicable"
    assert note(paid, "keyword") == "the payment event fires it by itself (keywords are for texts)"
    assert paid.outcome == "would_fire"
    wrong = told(spec({"type": "customer_payment"}), order(received_at=1010.0))
    assert note(wrong, "message_type") == "this was an order event, the task wants a text message or a payment event"


def test_keyword_shows_both_normalised_forms_and_the_match_mode():
    e = told(spec({**CR, "keyword": "ＯＫ", "exact_match": True}), text(" Ok好的 ", received_at=1010.0))
    assert table(e)["keyword"] == ("fail", {"keywords": ["ok"], "match": "exact"}, "ok好的")
    assert note(e, "keyword") == ('the text "ok好的" is not exactly "ok" '
                                  "(it contains one, but exact_match wants the whole text)")
    assert note(told(spec({**CR, "keyword": "ＯＫ", "exact_match": True}), text("ＯＫ", received_at=1010.0)),
                "keyword") == 'the text "ok" equals the keyword (exact_match)'
    several = told(spec(CK), text("谢谢", received_at=1010.0))
    assert note(several, "keyword") == 'the text "谢谢" contains none of "发票", "invoice", "pdf"'


@pytest.mark.parametrize("received_at,lookback,verdict,words", [
    (1010.0, 0, "pass", "arrived 10 s after the task"),
    (1000.0, 0, "pass", "arrived 0 s after the task"),
    (990.0, 30, "pass", "arrived 10 s before the task, within lookback_seconds 30"),
    (900.0, 30, "fail", "arrived 1 min 40 s before the task, more than its lookback_seconds 30"),
    (995.0, 0, "fail", "arrived 5 s before the task, which has no lookback_seconds"),
])
def test_lookback_window(received_at, lookback, verdict, words):
    e = told(spec({**CR, "lookback_seconds": lookback}), text("收到", received_at=received_at))
    assert table(e)["lookback"] == (verdict, float(lookback), 1000.0 - received_at)
    assert note(e, "lookback") == words
    assert e.matched is (verdict == "pass")


def test_custom_event_name_and_data():
    s = spec({"type": "custom_event", "event": "design_done", "match": {"order_id": "O-9", "n": 2}})
    e = told(s, custom("design_done", {"order_id": "O-8"}))
    assert [c.name for c in e.conditions] == ["status", "message_type", "shop", "event_name", "event_data",
                                              "deadline"]
    assert note(e, "event_data") == 'data.order_id was "O-8", the task wants "O-9"; data.n is missing, the task wants 2'
    other = told(s, custom("design_started", {"order_id": "O-9", "n": 2}))
    assert other.conclusion == "did not: the event was design_started, the task wants design_done"
    assert told(s, custom("design_done", {"order_id": "O-9", "n": 2, "x": 1})).outcome == "would_fire"
    on_text = told(s, text("design_done", received_at=1010.0))
    assert note(on_text, "message_type") == "this was a text message, the task wants a custom event"
    assert note(on_text, "event_name") == "this is not a custom event, the task wants design_done"


# -- the task's state -------------------------------------------------------------------------------

FIRED = ex.TaskState(status="completed", created_at=1000.0, expires_at=90000.0, triggered_at=1020.0,
                     triggered_by={"kind": "message", "msg_id": "m-7"}, completed_at=1021.0)


def test_the_firing_message_did_fire():
    e = told(spec(SCR), text("好的", msg_id="m-7", received_at=1019.9), FIRED)
    assert (e.outcome, e.conclusion) == ("fired", "did fire at t1020 (message m-7)")
    assert note(e, "status") == "fired by this message at t1020; it is completed now"


def test_a_later_message_finds_it_fired_already():
    e = told(spec(SCR), text("好的", msg_id="m-8", received_at=1030.0), FIRED)
    assert e.matched and e.outcome == "would_not_fire"
    assert e.conclusion == "did fire at t1020 (message m-7), before this message"
    assert table(e)["status"] == ("fail", "waiting", "completed")
    assert note(e, "status") == "already fired at t1020 by message m-7: a task fires once; it is completed now"
    other = told(spec(SCR), text("嗯", msg_id="m-6", received_at=1010.0), FIRED)
    assert other.conclusion == ('did fire at t1020 (message m-7), not on this message: '
                                'the text "嗯" does not contain "好的"')
    assert note(other, "status") == "not yet fired when this message came (it fired later, at t1020 by message m-7)"


def test_the_task_alone_after_it_fired():
    e = told(spec(SCR), None, FIRED)
    assert [c.name for c in e.conditions] == ["status", "deadline"]
    assert (e.outcome, e.conclusion) == ("fired", "did fire at t1020 (message m-7)")


@pytest.mark.parametrize("state,words", [
    (ex.TaskState(status="cancelled", created_at=1000.0, expires_at=90000.0, completed_at=1500.0,
                  error_message="cancelled: customer left"), "cancelled at t1500 (cancelled: customer left)"),
    (ex.TaskState(status="timeout", created_at=1000.0, expires_at=1400.0, completed_at=1400.4,
                  error_message="deadline passed before the trigger fired"),
     "timed out at t1400.4 (deadline passed before the trigger fired)"),
])
def test_cancelled_or_timed_out(state, words):
    later = told(spec(SCR), text("好的", received_at=1600.0), state)
    assert note(later, "status") == words
    assert later.outcome == "would_not_fire" and later.conclusion.startswith(f"did not: {words}")
    earlier = told(spec(SCR), text("嗯", received_at=1100.0), state)
    assert table(earlier)["status"][0] == "pass"


def test_past_the_deadline():
    state = ex.TaskState(status="timeout", created_at=1000.0, expires_at=1400.0, completed_at=1400.0)
    e = told(spec(SCR), text("好的", received_at=1700.0), state)
    assert table(e)["deadline"] == ("fail", "t1400", "t1700")
    assert note(e, "deadline") == "the deadline passed 5 min before"
    assert "the deadline passed 5 min before" in e.conclusion


def test_pending_is_not_listening_yet():
    e = told(spec(SCR), text("好的", received_at=1010.0), ex.TaskState(status="pending", created_at=1000.0,
                                                                       expires_at=90000.0))
    assert table(e)["status"] == ("fail", "waiting", "pending")
    assert e.conclusion.startswith("did not: pending: stored but not yet listening")


def test_hypothetical_messages_would_or_would_not():
    assert told(spec(SCR), text("不", received_at=5000.0), hypothetical=True).conclusion.startswith("would not: ")
    assert told(spec(SCR), text("好的", received_at=5000.0), hypothetical=True).conclusion == "would fire"


def test_waiting_without_a_message():
    e = told(spec(SCR), None)
    assert (e.outcome, e.conclusion, e.matched) == ("waiting", "waiting for a matching message", False)


# -- time_reach ---------------------------------------------------------------------------------------

TIMER = spec({"type": "time_reach", "time": "2030-01-01 09:00:00"}, "customer_123", acc_id="shop_001")


def test_time_not_yet_reached():
    state = ex.TaskState(status="waiting", created_at=1000.0, expires_at=9000.0 + 86400, due_at=9000.0)
    e = told(TIMER, None, state, now=1800.0)
    assert [c.name for c in e.conditions] == ["status", "deadline", "time"]
    assert table(e)["time"] == ("fail", "t9000", "t1800")
    assert note(e, "time") == "not yet reached: due at t9000, in 2 h"
    assert (e.outcome, e.conclusion) == ("waiting", "will fire at t9000")
    assert told(TIMER, None, state, now=9001.0).outcome == "would_fire"


def test_a_timer_that_fired_and_one_that_a_message_cannot_fire():
    state = ex.TaskState(status="completed", created_at=1000.0, expires_at=99999.0, due_at=9000.0,
                         triggered_at=9000.3, triggered_by={"kind": "time"})
    assert told(TIMER, None, state, now=9500.0).conclusion == "did fire at t9000.3 (its time)"
    e = told(TIMER, text("好的", received_at=1010.0),
             ex.TaskState(status="waiting", created_at=1000.0, expires_at=99999.0, due_at=9000.0))
    assert note(e, "message_type") == "a time_reach task fires at its time, not on a message or event"
    assert not e.matched and e.outcome == "would_not_fire"


@pytest.mark.parametrize("seconds,words", [(0, "0 s"), (59.6, "1 min"), (125, "2 min 5 s"), (7200, "2 h"),
                                           (3 * 86400 + 3600 * 5 + 7, "3 d 5 h"), (-3, "0 s")])
def test_duration(seconds, words):
    assert ex.duration(seconds) == words
