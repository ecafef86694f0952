"""What an action sends, step by step (CONTRACTS.md §1 `action.type`, §2 req_id)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.actions import SEND_ACTIONS, plan_steps, req_id


def test_send_actions():
    assert set(SEND_ACTIONS) == {"send_message", "send_file", "send_link"}


def test_send_message_is_one_text_step():
    assert plan_steps({"type": "send_message", "message": "您好，文件已发"}) == [
        {"kind": "text", "content": "您好，文件已发"}]


def test_send_file_message_first_then_file():
    steps = plan_steps({"type": "send_file", "file_url": "https://example.com/a.zip", "file_name": "设计稿.zip",
                        "message": "这是您要的文件"})
    assert steps == [
        {"kind": "text", "content": "这是您要的文件"},
        {"kind": "file", "file_url": "https://example.com/a.zip", "file_name": "设计稿.zip"},
    ]


def test_send_file_without_message_is_file_only():
    steps = plan_steps({"type": "send_file", "file_url": "https://example.com/a.zip", "file_name": "a.zip"})
    assert steps == [{"kind": "file", "file_url": "https://example.com/a.zip", "file_name": "a.zip"}]


@pytest.mark.parametrize("message", [None, "", "   ", "\u3000"])
def test_blank_message_sends_no_text(message):
    steps = plan_steps({"type": "send_file", "file_url": "https://e.com/a.zip", "message": message})
    assert [s["kind"] for s in steps] == ["file"]


@pytest.mark.parametrize("url,name", [
    ("https://example.com/files/a.zip", "a.zip"),
    ("https://example.com/files/a.zip?token=abc&x=/y", "a.zip"),
    ("https://example.com/files/report.pdf/", "report.pdf"),
    ("http://cdn.example.com/x/y/z/设计稿.psd", "设计稿.psd"),
])
def test_file_name_defaults_from_url(url, name):
    for action in ({"type": "send_file", "file_url": url},
                   {"type": "send_file", "file_url": url, "file_name": None},
                   {"type": "send_file", "file_url": url, "file_name": ""}):
        (step,) = plan_steps(action)
        assert step == {"kind": "file", "file_url": url, "file_name": name}


def test_file_name_default_is_never_empty():
    (step,) = plan_steps({"type": "send_file", "file_url": "https://example.com/"})
    assert step["file_name"]
    assert "/" not in step["file_name"]


def test_send_link_message_first_then_link():
    steps = plan_steps({"type": "send_link", "link_url": "https://example.com/p/1", "title": "作品集",
                        "desc": "点开看看", "message": "给您链接"})
    assert steps == [
        {"kind": "text", "content": "给您链接"},
        {"kind": "link", "url": "https://example.com/p/1", "title": "作品集", "desc": "点开看看"},
    ]


def test_send_link_optional_title_desc_default_to_empty():
    steps = plan_steps({"type": "send_link", "link_url": "https://example.com/p/1", "title": None})
    assert steps == [{"kind": "link", "url": "https://example.com/p/1", "title": "", "desc": ""}]


@pytest.mark.parametrize("kind", ["transfer_to_designer", "bogus"])
def test_non_send_actions_have_no_steps(kind):
    with pytest.raises(ValueError):
        plan_steps({"type": kind, "reason": "x", "message": "hello"})


def test_plan_is_deterministic():
    action = {"type": "send_file", "file_url": "https://e.com/a.zip", "message": "hi"}
    assert plan_steps(action) == plan_steps(dict(action))


# -- req_id ---------------------------------------------------------------------------------------

def test_req_id_format():
    assert req_id("TASK_20260227_001", 0, 0) == "TASK_20260227_001:0:0"
    assert req_id("TASK_20260227_001", 1, 3) == "TASK_20260227_001:1:3"


@given(task_id=st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True),
       step=st.integers(min_value=0, max_value=20), attempt=st.integers(min_value=0, max_value=20))
@settings(max_examples=100, deadline=None, database=None)
def test_req_id_names_step_before_last_colon(task_id, step, attempt):
    rid = req_id(task_id, step, attempt)
    head, _, last = rid.rpartition(":")
    assert last == str(attempt)
    assert head == f"{task_id}:{step}"
    # the same step on another attempt is recognisable; another step is not
    assert req_id(task_id, step, attempt + 1).rpartition(":")[0] == head
    assert req_id(task_id, step + 1, attempt).rpartition(":")[0] != head
    assert req_id(task_id, step, attempt + 1) != rid
