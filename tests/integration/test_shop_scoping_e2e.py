"""Shop scoping (issue 10 item 5) and "why didn't it fire?" (issue 11 item 2) on the shared live system.

A customer id belongs to a shop: a task bound to shop_A and customer c1 must not fire on c1's message on
shop_B, and the explanation, reading what the listener remembered, must say that is why. As in
test_triggers_e2e, every negative case is followed by a positive control whose `triggered_by` names it.
"""
import pytest

from tests.conftest import uid
from tests.integration.test_triggers_e2e import api_event, fired_by, msg, post, wait_remembered

pytestmark = pytest.mark.integration


def explain(live, task_id: str, **query) -> dict:
    live.use()
    answer = live.client.get(f"/api/task/{task_id}/explain", query_string=query)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["data"]


def test_a_task_bound_to_a_shop_ignores_its_customer_on_another_shop(live):
    customer = uid("c")
    task_id = post(live, {"type": "specified_customer_reply", "customer_id": customer, "keyword": "好的"},
                   action=msg("这是您要的文件"), acc_id="shop_A")
    elsewhere = live.qingjian.say(customer, "好的", acc_id="shop_B", from_name="小明")
    wait_remembered(live, customer, elsewhere)
    why = explain(live, task_id, msg_id=elsewhere)
    assert why["conclusion"] == "did not: the shop was shop_B, the task wants shop_A", why
    good = live.qingjian.say(customer, "好的", acc_id="shop_A", from_name="小明")
    by = fired_by(live, task_id)
    assert (by["msg_id"], by["acc_id"]) == (good, "shop_A")
    sends = live.qingjian.sent_to(customer)
    assert [(s["req_id"], s["data"]["acc_id"]) for s in sends] == [(f"{task_id}:0:0", "shop_A")]
    done = live.status(task_id)
    after = explain(live, task_id)
    assert after["conclusion"] == f"did fire at {done['triggered_at']} (message {good})"
    outcomes = {e["message"]["msg_id"]: e["outcome"] for e in after["evaluations"]}
    assert outcomes == {good: "fired", elsewhere: "would_not_fire"}


def test_a_task_without_acc_id_fires_on_any_shop(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_reply", "keyword": "在吗"}, customer=customer)
    good = live.qingjian.say(customer, "在吗", acc_id="shop_Z")
    by = fired_by(live, task_id)
    assert (by["msg_id"], by["acc_id"]) == (good, "shop_Z")
    assert live.qingjian.sent_to(customer)[0]["data"]["acc_id"] == "shop_Z"  # sent from the message's shop


def test_custom_events_of_another_shop_do_not_fire_a_shop_bound_task(live):
    customer = uid("c")
    event = uid("evt")
    task_id = post(live, {"type": "custom_event", "event": event}, customer=customer, acc_id="shop_A")
    api_event(live, event=event, customer_id=customer, acc_id="shop_B", data={"n": 1})
    api_event(live, event=event, customer_id=customer, data={"n": 2})  # names no shop
    api_event(live, event=event, customer_id=customer, acc_id="shop_A", data={"n": 3})
    by = fired_by(live, task_id)
    assert (by["kind"], by["acc_id"]) == ("custom", "shop_A")
    assert [s["data"]["acc_id"] for s in live.qingjian.sent_to(customer)] == ["shop_A"]
