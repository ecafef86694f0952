"""The pure parts of the dispatch workflow: who gets the job, and what 图绘 and the group are told."""
from hypothesis import given
from hypothesis import strategies as st

from app.domain import dispatch as flow

ONLINE = ["橘子", "婷婷", "小王"]


def test_nobody_online_means_no_choice():
    assert flow.choose_designer([], sticky="橘子", suggestion="婷婷") == flow.Choice(None, None)


def test_the_customers_recent_designer_wins_when_online():
    choice = flow.choose_designer(ONLINE, sticky="婷婷", suggestion="橘子", open_counts={"婷婷": 9})
    assert choice == flow.Choice("婷婷", "sticky")


def test_an_offline_recent_designer_falls_back_to_the_suggestion():
    choice = flow.choose_designer(ONLINE, sticky="阿强", suggestion="小王", open_counts={"小王": 5})
    assert choice == flow.Choice("小王", "suggestion")


def test_an_offline_suggestion_falls_back_to_the_least_loaded():
    choice = flow.choose_designer(ONLINE, sticky=None, suggestion="阿强", open_counts={"橘子": 3, "婷婷": 1, "小王": 2})
    assert choice == flow.Choice("婷婷", "least_loaded")


def test_least_loaded_ties_go_to_tuhuis_order():
    assert flow.choose_designer(ONLINE, open_counts={"橘子": 1}).designer == "婷婷"
    assert flow.choose_designer(ONLINE).designer == "橘子"


@given(online=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=5, unique=True),
       sticky=st.none() | st.sampled_from(["a", "b", "x"]), suggestion=st.none() | st.sampled_from(["c", "y"]),
       counts=st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 5)))
def test_the_choice_is_always_someone_online_and_follows_the_order_of_preference(online, sticky, suggestion,
                                                                                   counts):
    choice = flow.choose_designer(online, sticky=sticky, suggestion=suggestion, open_counts=counts)
    assert choice.designer in online
    if sticky in online:
        assert choice.why == "sticky"
    elif suggestion in online:
        assert choice.why == "suggestion"
    else:
        assert choice.why == "least_loaded"
        assert counts.get(choice.designer, 0) == min(counts.get(name, 0) for name in online)


def test_task_name_uses_the_last_four_characters_of_the_customer_id():
    assert flow.task_name("customer_1234") == "图片处理-1234"
    assert flow.task_name("ab") == "图片处理-ab"


def test_the_description_carries_reason_customer_image_and_our_dispatch_id():
    text = flow.description("d-42", "customer_9", "图片过于模糊", "https://x.example/a.jpg")
    for part in ("图片过于模糊", "customer_9", "https://x.example/a.jpg", "d-42"):
        assert part in text


def test_the_group_notice_is_markdown_and_stays_under_the_robots_limit():
    notice = flow.notice_markdown("橘子", "ea853bd9", "customer_9", "模糊" * 5000, "https://x/" + "a" * 9000)
    assert notice.startswith("📋 **新任务派单**\n设计师：橘子\n")
    assert "ea853bd9" in notice and "customer_9" in notice
    assert len(notice.encode()) < 4096


def test_req_ids_keep_the_id_step_attempt_shape():
    req = flow.req_id("d-1", flow.REPLY, 2)
    assert req == "dispatch:d-1:reply:2"
    assert req.rsplit(":", 1)[0] == "dispatch:d-1:reply"


def test_the_status_graph_ends_in_assigned_or_failed():
    assert flow.sources(flow.ASSIGNED) == {flow.CREATING}
    assert flow.PENDING in flow.sources(flow.FAILED) and flow.ASSIGNED not in flow.sources(flow.FAILED)
    assert all(flow.ASSIGNED not in froms and flow.FAILED not in froms for froms in flow.ALLOWED_FROM.values())
