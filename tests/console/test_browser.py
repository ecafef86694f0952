"""The console in a real browser against the live system (issue 11, "Done when"): an operator signs in,
finds a task that did not fire and reads why, retries a failed task and sees it complete, on a laptop
and on a phone, and the screenshots are kept.

Playwright drives the machine's chromium (Debian's package; never a downloaded browser) against a real
gunicorn serving the live system's app. Screenshots go to the test's temporary folder; with
SAVE_CONSOLE_SCREENSHOTS=1 they also replace those README shows (docs/console/).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import requests

from app import runtime
from app.console import users
from devkit import processes, stores
from tests.conftest import uid

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPERATOR, PASSWORD = "李雷", "li-lei-console-pass"
LAPTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}

if CHROMIUM is None:
    pytest.skip("no chromium here (Debian: apt-get install chromium fonts-noto-cjk; .ci/run installs them)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements/test.txt)")


@pytest.fixture(scope="module")
def console_url(live, tmp_path_factory):
    """A real gunicorn serving the live system's app, with the console on and one operator."""
    port = stores.free_port()
    env = {**live.system.env, "CONSOLE_SECRET_KEY": "browser-test-secret-5d1f",
           "CONSOLE_USERS": users.entry(OPERATOR, users.OPERATOR, PASSWORD), "CONSOLE_COOKIE_SECURE": "off"}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    web = processes.Proc("console-web", [gunicorn, "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                         "--threads", "4"], env, tmp_path_factory.mktemp("console-web"))
    base = f"http://127.0.0.1:{port}"

    def answers():
        assert web.alive(), web.output()[-3000:]
        try:
            return requests.get(f"{base}/api/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        stores.wait_until(answers, 30, 0.1, "the console's gunicorn to answer")
        yield base
    finally:
        web.stop()


@pytest.fixture(scope="module")
def browser():
    # Playwright gives the browser an empty profile (--user-data-dir) of its own, removed afterwards.
    with sync_api.sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield found
        found.close()


@pytest.fixture
def screenshots(tmp_path):
    """Where screenshots go; kept for README (docs/console/) when SAVE_CONSOLE_SCREENSHOTS=1."""
    taken = []

    def take(page, name: str, **options):
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), **options)
        assert path.stat().st_size > 10_000, f"{name}: an empty-looking screenshot"
        taken.append(path)

    yield take
    if os.environ.get("SAVE_CONSOLE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "console"
        target.mkdir(parents=True, exist_ok=True)
        for path in taken:
            shutil.copy(path, target / path.name)


def sign_in(browser, base: str, viewport: dict):
    context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai",
                                  is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    page = context.new_page()
    page.goto(f"{base}/console/")
    sync_api.expect(page.get_by_role("heading", name="登录天网控制台")).to_be_visible()
    page.get_by_label("用户名").fill(OPERATOR)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录", exact=True).click()
    sync_api.expect(page.get_by_role("heading", name="概览")).to_be_visible()
    return page


def open_task_from_the_list(page, base: str, customer: str, status: str, task_id: str) -> None:
    """As an operator looks for it: the task list, filtered by customer and status, then the task."""
    page.goto(f"{base}/console/tasks")
    page.get_by_label("客户 ID").fill(customer)
    page.get_by_label("状态").select_option(status)
    page.get_by_role("button", name="筛选").click()
    page.get_by_role("link", name=task_id, exact=True).click()
    sync_api.expect(page.locator("#task-id")).to_have_text(task_id)


def index_complete(live) -> None:
    """Matching waits until the index is complete; a live system started over tasks that earlier tests
    left waiting completes it at beat's first reconciliations."""
    live.use()
    stores.wait_until(runtime.current().registry.is_built, 60, 0.2, "the index to be complete")


def test_an_operator_reads_why_a_task_did_not_fire_and_retries_a_failed_one(live, console_url, browser,
                                                                            screenshots):
    index_complete(live)
    quiet_customer, failing_customer = uid("c"), uid("c")
    idle = live.post_task(task_id=uid("WAIT"), type="send_file_after_reply",
                          customer={"id": quiet_customer, "name": "小明"}, acc_id="shop_001",
                          trigger={"type": "specified_customer_reply", "customer_id": quiet_customer,
                                   "customer_name": "小明", "keyword": "好的"},
                          action={"type": "send_file", "file_url": "https://example.com/a.zip",
                                  "message": "这是您要的文件"}, created_by="设计师 lz")["task_id"]
    live.qingjian.say(quiet_customer, "好的，谢谢", from_name="小红")  # the right words, another name
    failing = live.post_task(task_id=uid("FAIL"), type="reply", customer={"id": failing_customer},
                             trigger={"type": "customer_reply", "keyword": "发货"},
                             action={"type": "send_message", "message": "今天发货"}, max_retry=0)["task_id"]
    live.qingjian.fail_next(1, error="account busy")
    try:
        live.qingjian.say(failing_customer, "什么时候发货？", from_name="小刚")
        live.wait_status(failing, "failed", timeout=60)
    finally:
        live.qingjian.fail_next(0)  # never left for the next test's sends

    def recorded():
        live.use()
        data = live.client.get(f"/api/task/{idle}/explain").get_json()["data"]
        return data if any(e["message"] for e in data["evaluations"]) else None

    explained = stores.wait_until(recorded, 30, 0.1, "the customer's message to be recorded")
    assert live.status(idle)["status"] == "waiting"

    page = sign_in(browser, console_url, LAPTOP)
    screenshots(page, "overview")
    open_task_from_the_list(page, console_url, quiet_customer, "waiting", idle)
    conclusion = page.locator("#conclusion")
    sync_api.expect(conclusion).to_have_text(explained["conclusion"])
    assert "the name was 小红, the task wants 小明" in conclusion.inner_text()
    failed_row = page.locator("table.conditions tr.v-fail").first
    sync_api.expect(failed_row).to_contain_text("客户昵称")
    sync_api.expect(failed_row).to_contain_text("✗ 不符")
    screenshots(page, "task-did-not-fire")

    open_task_from_the_list(page, console_url, failing_customer, "failed", failing)
    sync_api.expect(page.locator("#task-status .badge")).to_have_text("failed")
    page.once("dialog", lambda dialog: dialog.accept())  # "确定重试任务 …？"
    page.get_by_label("重试原因").fill("轻简已恢复")
    page.get_by_role("button", name="重试", exact=True).click()
    sync_api.expect(page.locator(".flash.ok")).to_contain_text("已重试")
    # The page refreshes itself while the task runs; the fake answers this send with ok.
    sync_api.expect(page.locator("#task-status .badge")).to_have_text("completed", timeout=60_000)
    retried = page.locator("ol.timeline li", has_text="人工重试：failed → running")
    sync_api.expect(retried).to_contain_text(f"操作人 {OPERATOR}")
    sync_api.expect(retried).to_contain_text("轻简已恢复")
    screenshots(page, "task-retried", full_page=True)

    assert [s["data"]["content"] for s in live.qingjian.sent_to(failing_customer)] == ["今天发货"]
    assert live.tianwang.wait_for_status(failing, "completed", 30)
    live.use()
    events = live.client.get(f"/api/task/{failing}/events").get_json()["data"]["events"]
    assert any(e["to_status"] == "running" and (e["detail"] or {}).get("by") == OPERATOR for e in events), events

    phone = sign_in(browser, console_url, PHONE)
    screenshots(phone, "phone-overview")
    phone.goto(f"{console_url}/console/tasks/{idle}")
    sync_api.expect(phone.locator("#conclusion")).to_have_text(explained["conclusion"])
    screenshots(phone, "phone-task-did-not-fire")
    phone.goto(f"{console_url}/console/customers/{quiet_customer}")
    sync_api.expect(phone.get_by_text("好的，谢谢")).to_be_visible()
    screenshots(phone, "phone-customer")
