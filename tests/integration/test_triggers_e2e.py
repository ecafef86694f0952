"""Every trigger type and every send action end to end, on the shared live system.

Intake API -> listener -> messages.match -> claim -> tasks.run_action -> 轻简 fake -> 天网 fake.
Each test uses its own customer ids (and, for any-customer triggers, its own keywords), so leftovers
of other tests never match. A negative case ("this must not fire") is always followed by a positive
control: the task must then fire on the positive message, and `triggered_by` names that message,
which it would not if the negative one had fired it.
"""
import pytest
from sqlalchemy import select

from app import runtime
from app.infra.db import session_scope
from app.models import InboundMessage
from devkit.stores import wait_until
from tests.conftest import uid

pytestmark = pytest.mark.integration

FILE = {"type": "send_file", "file_url": "https://example.com/f/a.zip", "file_name": "a.zip",
        "message": "这是您要的文件"}


def msg(text: str) -> dict:
    return {"type": "send_message", "message": text}


def post(live, trigger: dict, action: dict | None = None, customer: str | None = None, **extra) -> str:
    task_id = uid()
    body = {"task_id": task_id, "type": "e2e", "trigger": trigger,
            "action": action or msg(f"hello {task_id}"), **extra}
    if customer:
        body["customer"] = {"id": customer}
    data = live.post_task(**body)
    assert data["status"] == "waiting", data
    return task_id


def fired_by(live, task_id: str, timeout: float = 20) -> dict:
    done = live.wait_status(task_id, "completed", timeout=timeout)
    return done["triggered_by"]


def received(live, customer: str) -> list[tuple[str, str]]:
    """What our side sent the customer: (action, req_id) of every frame, in order (a repeat included,
    which 轻简 would not deliver again)."""
    return [(f["action"], f["req_id"]) for f in live.qingjian.frames_for(customer)]


def wait_remembered(live, customer: str, msg_id: str) -> None:
    """Until the listener has received (and remembered, for lookback) the customer's message."""
    live.use()
    rt = runtime.current()
    key = f"{rt.settings.redis_prefix}recent:{customer}"
    wait_until(lambda: any(msg_id in m.decode() for m in rt.redis.zrange(key, 0, -1)), 10,
               message=f"listener to receive {msg_id}")


def wait_matched(live, msg_id: str) -> None:
    """Until matching has finished with the message (its inbound row is marked matched). A task posted
    after that can only be fired by this message through registration's catch-up, which is what
    lookback_seconds exists for."""
    live.use()

    def matched() -> bool:
        with session_scope() as session:
            return session.scalar(select(InboundMessage.matched_at).where(InboundMessage.msg_id == msg_id)) is not None

    wait_until(matched, 10, message=f"the match of {msg_id} to finish")


# -- triggers -----------------------------------------------------------------------------------

def test_specified_customer_reply_fires_only_for_that_customer_and_name(live):
    customer, other = uid("c"), uid("c")
    task_id = post(live, {"type": "specified_customer_reply", "customer_id": customer,
                          "customer_name": "小明", "keyword": "好的"})
    live.qingjian.say(other, "好的", from_name="小明")  # another customer
    live.qingjian.say(customer, "好的谢谢", from_name="小红")  # right customer, wrong name
    live.qingjian.say(customer, "嗯嗯", from_name="小明")  # right customer, no keyword
    good = live.qingjian.say(customer, "好的，谢谢", from_name="小明")
    by = fired_by(live, task_id)
    assert by["msg_id"] == good and by["customer_id"] == customer
    assert received(live, customer) == [("send_text", f"{task_id}:0:0")]
    assert received(live, other) == []


def test_customer_reply_exact_match(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_reply", "keyword": "OK", "exact_match": True}, customer=customer)
    live.qingjian.say(customer, "ok好的")  # contains it, but not equal
    good = live.qingjian.say(customer, " ＯＫ ")  # equal after NFKC, trim and case folding
    assert fired_by(live, task_id)["msg_id"] == good
    assert len(received(live, customer)) == 1


def test_customer_reply_substring_match_any_customer(live):
    customer = uid("c")
    keyword = f"收到{uid('k')}"
    task_id = post(live, {"type": "customer_reply", "keyword": keyword, "exact_match": False})
    live.qingjian.say(customer, f"收到{keyword[2:8]}")  # a piece of the keyword is not enough
    good = live.qingjian.say(customer, f"嗯嗯{keyword}啦")
    by = fired_by(live, task_id)
    assert by["msg_id"] == good and by["customer_id"] == customer
    assert received(live, customer) == [("send_text", f"{task_id}:0:0")]  # sent to who triggered it


def test_customer_keyword_any_of_the_keywords(live):
    customer = uid("c")
    k1, k2 = uid("alpha"), uid("beta")
    task_id = post(live, {"type": "customer_keyword", "keywords": [k1, k2]})
    good = live.qingjian.say(customer, f"我想问一下 {k2.upper()} 的事")  # Latin letters: case-insensitive
    assert fired_by(live, task_id)["msg_id"] == good
    assert received(live, customer) == [("send_text", f"{task_id}:0:0")]


def test_customer_keyword_bound_customer_ignores_others(live):
    customer, other = uid("c"), uid("c")
    keyword = uid("kw")
    task_id = post(live, {"type": "customer_keyword", "keywords": [keyword]}, customer=customer)
    live.qingjian.say(other, keyword)
    good = live.qingjian.say(customer, keyword)
    by = fired_by(live, task_id)
    assert by["msg_id"] == good and by["customer_id"] == customer
    assert received(live, other) == []


@pytest.mark.parametrize("kind", ["customer_payment", "customer_order"])
def test_payment_and_order_by_event(live, kind):
    customer = uid("c")
    task_id = post(live, {"type": kind}, customer=customer)
    live.qingjian.say(customer, "随便聊聊")  # no payment/order keyword
    if kind == "customer_payment":
        good = live.qingjian.pay(customer, order_id="O-1", amount="68.00")
    else:
        good = live.qingjian.order(customer, order_id="O-1")
    by = fired_by(live, task_id)
    assert by["msg_id"] == good
    assert by["kind"] == ("payment" if kind == "customer_payment" else "order")
    assert received(live, customer) == [("send_text", f"{task_id}:0:0")]


@pytest.mark.parametrize("kind, text", [("customer_payment", "亲，我已付款了"), ("customer_order", "我下单了哦")])
def test_payment_and_order_by_default_text_keyword(live, kind, text):
    customer = uid("c")
    task_id = post(live, {"type": kind}, customer=customer)
    if kind == "customer_payment":
        live.qingjian.order(customer)  # an order event does not fire a payment trigger
    else:
        live.qingjian.pay(customer)  # nor a payment event an order trigger
    good = live.qingjian.say(customer, text)
    by = fired_by(live, task_id)
    assert by["msg_id"] == good and by["kind"] == "message"


def test_payment_custom_keywords(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_payment", "keywords": ["转账好了"]}, customer=customer)
    live.qingjian.say(customer, "已付款")  # not one of this task's keywords
    good = live.qingjian.say(customer, "转账好了，请查收")
    assert fired_by(live, task_id)["msg_id"] == good


def api_event(live, **body) -> None:
    live.use()
    answer = live.client.post("/api/event", json=body)
    assert answer.status_code == 202, answer.get_json()


def test_custom_event_with_match(live):
    wrong, right = uid("c"), uid("c")
    event = uid("evt")
    task_id = post(live, {"type": "custom_event", "event": event, "match": {"level": "vip", "n": 2}},
                   action={"type": "send_link", "link_url": "https://example.com/vip", "title": "VIP"})
    api_event(live, event=event, customer_id=wrong, data={"level": "vip", "n": 3})  # n differs
    api_event(live, event=event, customer_id=wrong, data={"level": "vip"})  # n missing
    api_event(live, event=uid("evt"), customer_id=wrong, data={"level": "vip", "n": 2})  # another event
    api_event(live, event=event, customer_id=right, acc_id="shop_002", data={"level": "vip", "n": 2, "x": 1})
    by = fired_by(live, task_id)
    assert by["kind"] == "custom" and by["customer_id"] == right
    sends = live.qingjian.frames_for(right)
    assert [s["action"] for s in sends] == ["send_link"]
    assert sends[0]["data"]["acc_id"] == "shop_002"  # the event's account (the task names none)
    assert received(live, wrong) == []


def test_custom_event_without_customer_goes_to_the_tasks_customer(live):
    customer = uid("c")
    event = uid("evt")
    task_id = post(live, {"type": "custom_event", "event": event}, customer=customer)
    api_event(live, event=event, data={})
    fired_by(live, task_id)
    assert received(live, customer) == [("send_text", f"{task_id}:0:0")]


def test_custom_event_with_nobody_to_send_to_fails_clearly(live):
    event = uid("evt")
    task_id = post(live, {"type": "custom_event", "event": event})
    api_event(live, event=event, data={})
    failed = live.wait_status(task_id, "failed")
    assert "customer" in failed["error_message"]
    assert live.tianwang.wait_for_status(task_id, "failed", 15)


# -- lookback_seconds ---------------------------------------------------------------------------

def test_lookback_covers_a_message_said_before_the_task(live):
    customer = uid("c")
    early = live.qingjian.say(customer, "好的")
    wait_matched(live, early)
    task_id = post(live, {"type": "customer_reply", "keyword": "好的", "lookback_seconds": 60},
                   customer=customer)
    assert fired_by(live, task_id)["msg_id"] == early
    assert received(live, customer) == [("send_text", f"{task_id}:0:0")]


def test_lookback_any_customer_trigger(live):
    customer = uid("c")
    keyword = uid("kw")
    early = live.qingjian.say(customer, f"{keyword}!")
    wait_matched(live, early)
    task_id = post(live, {"type": "customer_keyword", "keywords": [keyword], "lookback_seconds": 30})
    by = fired_by(live, task_id)
    assert by["msg_id"] == early and by["customer_id"] == customer


def test_without_lookback_an_earlier_message_does_not_fire(live):
    customer = uid("c")
    wait_matched(live, live.qingjian.say(customer, "好的"))
    task_id = post(live, {"type": "customer_reply", "keyword": "好的", "lookback_seconds": 0},
                   customer=customer)
    assert live.status(task_id)["status"] == "waiting"  # registration's catch-up ran inside the post
    later = live.qingjian.say(customer, "好的")
    assert fired_by(live, task_id)["msg_id"] == later


# -- actions ------------------------------------------------------------------------------------

def test_send_message_action(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_reply", "keyword": "在吗"}, action=msg("在的，请讲"),
                   customer=customer, acc_id="shop_009")
    live.qingjian.say(customer, "在吗", acc_id="shop_009")  # a task naming acc_id hears only that shop
    done = live.wait_status(task_id, "completed")
    sends = live.qingjian.frames_for(customer)
    assert len(sends) == 1
    assert sends[0]["action"] == "send_text"
    assert sends[0]["data"] == {"acc_id": "shop_009", "to_id": customer, "content": "在的，请讲"}
    assert done["result"]["sent"] == [f"{task_id}:0:0"]
    assert done["retry_count"] == 0 and done["error_message"] is None
    wait_until(lambda: sorted(live.tianwang.statuses(task_id)) == ["completed", "running"], 15,
               message="callbacks running and completed")


def test_send_file_action_message_then_file(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_reply", "keyword": "发我"}, action=FILE, customer=customer)
    live.qingjian.say(customer, "发我吧", acc_id="shop_003")
    live.wait_status(task_id, "completed")
    sends = live.qingjian.frames_for(customer)
    assert [s["action"] for s in sends] == ["send_text", "send_file"]
    assert sends[0]["data"]["content"] == "这是您要的文件"
    assert sends[1]["data"] == {"acc_id": "shop_003", "to_id": customer,  # the message's account
                                "file_url": "https://example.com/f/a.zip", "file_name": "a.zip"}
    assert sends[0]["time"] <= sends[1]["time"]


def test_send_file_without_message_sends_only_the_file(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_reply", "keyword": "发我"}, customer=customer,
                   action={"type": "send_file", "file_url": "https://example.com/d/report.pdf?x=1"})
    live.qingjian.say(customer, "发我")
    live.wait_status(task_id, "completed")
    sends = live.qingjian.frames_for(customer)
    assert [s["action"] for s in sends] == ["send_file"]
    assert sends[0]["data"]["file_name"] == "report.pdf"
    assert sends[0]["req_id"] == f"{task_id}:0:0"


def test_send_link_action_message_then_link(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_reply", "keyword": "教程"}, customer=customer,
                   action={"type": "send_link", "link_url": "https://example.com/guide", "title": "使用教程",
                           "desc": "三分钟上手", "message": "教程链接如下"})
    live.qingjian.say(customer, "教程在哪")
    live.wait_status(task_id, "completed")
    sends = live.qingjian.frames_for(customer)
    assert [s["action"] for s in sends] == ["send_text", "send_link"]
    assert sends[0]["data"]["content"] == "教程链接如下"
    assert {k: sends[1]["data"][k] for k in ("url", "title", "desc")} == {
        "url": "https://example.com/guide", "title": "使用教程", "desc": "三分钟上手"}
    assert [s["req_id"] for s in sends] == [f"{task_id}:0:0", f"{task_id}:1:0"]


# -- one message, several tasks; duplicates ------------------------------------------------------

def test_one_message_fires_several_tasks_in_priority_order(live):
    customer = uid("c")
    trigger = {"type": "customer_reply", "keyword": "好的"}
    # Posted in the reverse of the order they must run in: priority beats age, then oldest first.
    low = post(live, trigger, customer=customer, priority="low")
    normal_old = post(live, trigger, customer=customer, priority="normal")
    normal_new = post(live, trigger, customer=customer, priority="normal")
    urgent = post(live, trigger, customer=customer, priority="urgent")
    msg_id = live.qingjian.say(customer, "好的")
    for task_id in (low, normal_old, normal_new, urgent):
        assert fired_by(live, task_id)["msg_id"] == msg_id
    order = [req.split(":")[0] for _, req in received(live, customer)]
    assert order == [urgent, normal_old, normal_new, low]


def test_same_message_delivered_twice_fires_once(live):
    customer = uid("c")
    trigger = {"type": "customer_reply", "keyword": "好的"}
    first = post(live, trigger, customer=customer)
    msg_id = live.qingjian.say(customer, "好的")
    assert fired_by(live, first)["msg_id"] == msg_id
    # A second task now waits; a redelivery of the same message (as after a reconnect) must not
    # fire it, although it would if it were a new message.
    second = post(live, trigger, customer=customer)
    live.use()
    rt = runtime.current()
    stats = f"{rt.settings.redis_prefix}stats:listener"
    dupes_before = int(rt.redis.hget(stats, "duplicates") or 0)
    live.qingjian.say(customer, "好的", msg_id=msg_id)
    wait_until(lambda: int(rt.redis.hget(stats, "duplicates") or 0) > dupes_before, 10,
               message="the listener to drop the duplicate")
    fresh = live.qingjian.say(customer, "好的")
    assert fired_by(live, second)["msg_id"] == fresh
    assert received(live, customer) == [("send_text", f"{first}:0:0"), ("send_text", f"{second}:0:0")]


def test_a_task_fires_at_most_once(live):
    customer = uid("c")
    task_id = post(live, {"type": "customer_reply", "keyword": "好的"}, customer=customer)
    said = {live.qingjian.say(customer, text) for text in ("好的", "好的呀", "好的好的")}
    assert fired_by(live, task_id)["msg_id"] in said  # matched side by side: any one of them wins
    live.use()
    events = live.client.get(f"/api/task/{task_id}/events").get_json()["data"]["events"]
    assert [e["to_status"] for e in events if e["kind"] == "status"] == ["waiting", "running", "completed"]
    assert received(live, customer) == [("send_text", f"{task_id}:0:0")]


def test_a_message_from_another_customer_fires_nothing(live):
    customer, stranger = uid("c"), uid("c")
    tasks = [
        post(live, {"type": "specified_customer_reply", "customer_id": customer, "keyword": "好的"}),
        post(live, {"type": "customer_reply", "keyword": "好的"}, customer=customer),
        post(live, {"type": "customer_payment"}, customer=customer),
        post(live, {"type": "customer_order"}, customer=customer),
    ]
    live.qingjian.say(stranger, "好的，已付款，下单了")
    live.qingjian.pay(stranger)
    live.qingjian.order(stranger)
    # The positive control: the bound customer's own words fire all four.
    good = live.qingjian.say(customer, "好的，已付款，下单了")
    for task_id in tasks:
        by = fired_by(live, task_id)
        assert by["msg_id"] == good and by["customer_id"] == customer
    assert received(live, stranger) == []
