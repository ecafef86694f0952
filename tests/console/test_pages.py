"""The console's pages, read by a signed-in viewer: each shows what the stores hold."""
import html
import re
from datetime import timedelta

from sqlalchemy import update

from app import runtime
from app.infra import heartbeat
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox, Dispatch, DispatchStep
from app.services import explain
from tests.api.helpers import reply_body
from tests.console.conftest import text
from tests.console.data import fail, post_task, say


def rows_of(page: str, table_class: str = "stack") -> list[str]:
    """Each body row of the first table of that class, as its visible text."""
    table = re.search(rf'<table class="{table_class}[^"]*">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("</thead>")[-1], re.S)
    return [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))).strip() for row in rows]


def test_the_overview_shows_tasks_by_status_heartbeats_queues_callbacks_and_recent_failures(viewer, api):
    post_task(api, "T_wait")
    post_task(api, "T_fail", customer="c_fail")
    fail("T_fail")
    rt = runtime.current()
    heartbeat.beat(rt.redis, rt.keys, "listener")
    rt.redis.lpush("actions", "{}")
    with session_scope() as session:  # one callback still owed to 天网
        session.execute(update(CallbackOutbox).where(CallbackOutbox.status == "running").values(state="pending"))
    page = text(viewer.get("/console/"))
    tasks = page.split('id="tasks"')[1].split("</section>")[0]
    counts = dict(re.findall(r'href="/console/tasks\?status=(\w+)">.*?<strong>(\d+)</strong>', tasks, re.S))
    assert counts == {"pending": "0", "waiting": "1", "running": "0", "completed": "0", "failed": "1",
                      "cancelled": "0", "timeout": "0"}
    health = rows_of(page, "plain")
    assert any(row.startswith("监听进程 listener") and "✓ 正常" in row for row in health), health
    assert any(row.startswith("定时进程 beat") and "no beat heartbeat" in row for row in health), health
    queues = rows_of(page.split('id="queues"')[1], "plain")
    assert "actions 1 0.0 秒" in queues and "match 0 —" in queues, queues  # (a message we did not stamp: no age)
    assert re.search(r'最早未送达：<a href="/console/tasks/T_fail#callbacks">T_fail</a>', page)
    failures = rows_of(page.split('id="failures"')[1])
    assert len(failures) == 1 and failures[0].startswith("T_fail c_fail") and "account banned" in failures[0]


def test_the_task_list_filters_by_each_field_and_searches_by_id(viewer, api):
    post_task(api, "SHOP_A_1", customer="c1")
    post_task(api, "SHOP_A_2", customer="c2", type="other_type")
    api.post("/api/task/receive", json=reply_body("SHOP_B_1", keyword="发货"))
    fail("SHOP_A_2")

    def listed(**query) -> list[str]:
        answer = viewer.get("/console/tasks", query_string=query)
        assert answer.status_code == 200
        return sorted(re.findall(r'<td data-label="任务 ID"><a href="/console/tasks/([^"]+)"', text(answer)))

    assert listed() == ["SHOP_A_1", "SHOP_A_2", "SHOP_B_1"]
    assert listed(customer_id="c1") == ["SHOP_A_1"]
    assert listed(status="failed") == ["SHOP_A_2"]
    assert listed(type="other_type") == ["SHOP_A_2"]
    assert listed(trigger_type="customer_reply") == ["SHOP_B_1"]
    assert listed(q="SHOP_A") == ["SHOP_A_1", "SHOP_A_2"]
    assert listed(q="SHOP%") == [] and listed(q="SHOP_A_") == ["SHOP_A_1", "SHOP_A_2"]  # no wildcards
    today = utcnow().date()
    assert listed(created_from=str(today - timedelta(days=1)), created_to=str(today + timedelta(days=1))) == \
        ["SHOP_A_1", "SHOP_A_2", "SHOP_B_1"]
    assert listed(created_from=str(today + timedelta(days=2))) == []
    assert listed(created_to=str(today - timedelta(days=2))) == []
    exact = viewer.get("/console/tasks", query_string={"q": "SHOP_B_1"})
    assert exact.status_code == 302 and exact.location == "/console/tasks/SHOP_B_1"


def test_bad_filters_are_said_not_guessed(viewer, api):
    post_task(api, "T_1")
    page = text(viewer.get("/console/tasks", query_string={"created_from": "2026-13-01", "status": "done"}))
    assert "起始日期应为 YYYY-MM-DD：2026-13-01" in page and "没有这个状态：done" in page
    assert "/console/tasks/T_1" not in page


def test_the_task_list_is_paged(viewer, api):
    for number in range(53):
        api.post("/api/task/receive", json=reply_body(f"P_{number:03d}"))
    first = text(viewer.get("/console/tasks"))
    assert "共 53 个任务" in first and "第 1 / 2 页" in first and first.count('data-label="任务 ID"') == 50
    second = text(viewer.get("/console/tasks", query_string={"page": 2}))
    assert second.count('data-label="任务 ID"') == 3 and "‹ 上一页" in second
    for odd in ("0", "-1", "abc", "9" * 30):  # no error page: the first page, or an empty one past the end
        assert viewer.get("/console/tasks", query_string={"page": odd}).status_code == 200


def test_a_task_that_did_not_fire_says_why_with_each_condition(viewer, api):
    post_task(api, "T_why", customer="c_why")  # wants 小明 to say 好的
    say("c_why", "好的谢谢", name="小红", seconds_ago=-1)
    answer = viewer.get("/console/tasks/T_why")
    assert answer.status_code == 200
    page = text(answer)
    told = explain.explain_task("T_why")
    assert "the name was 小红, the task wants 小明" in told["conclusion"]
    assert f'<p class="conclusion" id="conclusion">{html.escape(told["conclusion"])}</p>' in page
    conditions = rows_of(page, "stack conditions")
    assert "客户昵称 customer_name ✗ 不符 小明 小红 the name was 小红, the task wants 小明" in conditions
    assert any(row.startswith("关键词 keyword ✓ 符合") for row in conditions), conditions
    assert "<code>customer_name</code>" in page  # field names as on the wire, beside their labels


def test_a_task_is_explained_against_one_message_when_asked(viewer, api):
    post_task(api, "T_one", customer="c_one")
    wrong = say("c_one", "好", seconds_ago=-1)
    say("c_one", "好的", name="小红", seconds_ago=-2)
    page = text(viewer.get("/console/tasks/T_one", query_string={"msg_id": wrong}))
    assert page.count('<details class="evaluation"') == 1
    assert explain.explain_task("T_one", msg_id=wrong)["conclusion"] in html.unescape(page)
    missing = text(viewer.get("/console/tasks/T_one", query_string={"msg_id": "nope"}))
    assert "最近的消息里没有 msg_id nope" in missing


def test_a_task_shows_its_fields_history_and_callbacks(viewer, api):
    post_task(api, "T_hist", created_by="设计师 lz")
    fail("T_hist")
    page = text(viewer.get("/console/tasks/T_hist"))
    fields = dict(re.findall(r"<th>[^<]*<code>(\w+)</code></th>\s*<td>(.*?)</td>", page, re.S))
    assert fields["task_id"] == "T_hist" and fields["status"] == "failed" and fields["customer_id"] == "customer_123"
    timeline = [html.unescape(re.sub(r"<[^>]+>|\s+", " ", item)).split() for item in
                re.findall(r'<li class="t-\w+">(.*?)</li>', page, re.S)]
    titles = [" ".join(words[2:]) for words in timeline]
    assert titles[0].startswith("收到任务 received") and "创建人：设计师 lz" in titles[0]
    assert any(t.startswith("发送第 0 步：被拒 send") and "req_id：T_hist:0:0" in t for t in titles), titles
    assert titles[-1].startswith("running → failed status") and "account banned" in titles[-1]
    callbacks = rows_of(page.split('id="callbacks"')[1])
    assert [row.split()[1:3] for row in callbacks] == [["running", "unsent"], ["failed", "unsent"]]


def test_an_unknown_task_is_404(viewer):
    answer = viewer.get("/console/tasks/NOPE")
    assert answer.status_code == 404 and "没有任务 NOPE" in text(answer)


def test_a_customer_page_shows_what_waits_and_each_message_with_what_it_fired(viewer, api):
    post_task(api, "T_c_wait", customer="c_page")
    post_task(api, "T_c_done", customer="c_page")
    fail("T_c_done")
    say("c_page", "你好", seconds_ago=30, fired=[])
    say("c_page", "好的 <script>alert(1)</script>", seconds_ago=20, fired=["T_c_done"])
    say("c_page", "在吗", seconds_ago=10)
    page = text(viewer.get("/console/customers/c_page"))
    waiting = rows_of(page)
    assert len(waiting) == 1 and waiting[0].startswith("T_c_wait waiting")
    assert "已结束的任务 1 个" in page
    messages = rows_of(page.split('id="messages"')[1])
    assert [m.split("“")[1].split("”")[0] for m in messages] == ["在吗", "好的 <script>alert(1)</script>", "你好"]
    assert "尚未匹配" in messages[0] and "没有触发任务" in messages[2]
    assert '<a href="/console/tasks/T_c_done">T_c_done</a>' in page.split('id="messages"')[1]
    assert "<script>alert(1)</script>" not in page  # shown, never run
    assert viewer.get("/console/customers", query_string={"customer_id": "c_page"}).location == \
        "/console/customers/c_page"


def test_dispatches_show_their_steps_and_filter_by_status(viewer):
    with session_scope() as session:
        session.add_all([
            Dispatch(dispatch_id="d-ok", customer_id="c_d", acc_id="shop_001", status="assigned", designer="橘子",
                     tuhui_task_id="TH_9", reason="改图"),
            Dispatch(dispatch_id="d-bad", customer_id="c_d", status="failed", error="no designer online for 120 min")])
        session.flush()
        session.add_all([
            DispatchStep(dispatch_id="d-ok", step="find_designer", status="done", attempts=1, result={"designer": "橘子"}),
            DispatchStep(dispatch_id="d-ok", step="create", status="done", attempts=2, last_error="timeout"),
            DispatchStep(dispatch_id="d-bad", step="find_designer", status="failed", attempts=5,
                         last_error="nobody online")])
    page = text(viewer.get("/console/dispatches"))
    assert "共 2 次转交" in page and "TH_9" in page and "no designer online for 120 min" in page
    ok = page.split('id="dispatch-d-ok"')[1].split("</section>")[0]
    assert "选择设计师" in ok and "创建图绘任务" in ok and "尝试 2 次" in ok and "timeout" in ok
    failed_only = text(viewer.get("/console/dispatches", query_string={"status": "failed"}))
    assert 'id="dispatch-d-bad"' in failed_only and 'id="dispatch-d-ok"' not in failed_only
    assert "没有这个状态：lost" in text(viewer.get("/console/dispatches", query_string={"status": "lost"}))
