"""Scale-out proof on one machine: `python -m bench.scale_out [--tasks 2000 --messages 5000]`.

Two web servers, three workers, two beats and two listeners against one Redis and one PostgreSQL.
It posts the tasks through both web servers, has customers send the messages (with repeats), kills
the active listener and a beat half way, and then checks against the fakes' records and the database
that every task fired at most once, none was lost, and the killed singletons were replaced in time.
Writes bench/results/scale_out.json.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text
from tqdm import tqdm

from bench.private import private_system, web_healthy
from devkit import processes, stores
from devkit.fakes.qingjian import FakeQingjian

RESULTS = Path(__file__).resolve().parent / "results"


def task_bodies(n: int, timers_due: datetime) -> list[dict]:
    """A mix: customer-bound replies (40%), any-customer keywords (40%), timers (20%)."""
    bodies = []
    for i in range(n):
        task_id = f"SCALE_{i:05d}"
        action = {"type": "send_message", "message": f"消息 {task_id}"}
        if i % 5 in (0, 1):
            trigger = {"type": "specified_customer_reply", "customer_id": f"cust{i}", "keyword": "好的"}
            bodies.append({"task_id": task_id, "type": "reply", "trigger": trigger, "action": action})
        elif i % 5 in (2, 3):
            trigger = {"type": "customer_keyword", "keywords": [f"口令{i}"]}
            bodies.append({"task_id": task_id, "type": "keyword", "trigger": trigger, "action": action})
        else:
            trigger = {"type": "time_reach", "time": timers_due.isoformat()}
            bodies.append({"task_id": task_id, "type": "timer", "customer": {"id": f"cust{i}"},
                           "acc_id": "shop_001", "trigger": trigger, "action": action})
    return bodies


def messages_for(bodies: list[dict], total: int) -> list[tuple[str, str, str]]:
    """(msg_id, from_id, text): one firing message per message task, the rest noise, shuffled."""
    firing = []
    for body in bodies:
        i = int(body["task_id"].split("_")[1])
        if body["trigger"]["type"] == "specified_customer_reply":
            firing.append((f"m-fire-{i}", f"cust{i}", "好的，谢谢"))
        elif body["trigger"]["type"] == "customer_keyword":
            firing.append((f"m-fire-{i}", f"anyone{i}", f"我的口令{i}到了"))
    noise = [(f"m-noise-{j}", f"noise{j % 997}", f"随便聊聊 {j}") for j in range(max(0, total - len(firing)))]
    messages = firing + noise
    random.Random(7).shuffle(messages)
    return messages


def run(n_tasks: int, n_messages: int) -> dict:
    report: dict = {"tasks": n_tasks, "messages": n_messages}
    with private_system("scale_out", report, ACTION_LEASE_SECONDS="10", QINGJIAN_SEND_TIMEOUT="5") as private:
        system, qingjian, tianwang, db_url = private.system, private.qingjian, private.tianwang, private.db_url
        ports = [stores.free_port(), stores.free_port()]
        for i, port in enumerate(ports):
            system.web(port, name=f"web{i}")
        for i in range(3):
            system.worker(f"worker{i}", concurrency=2)
        beats = [system.beat(f"beat{i}") for i in range(2)]
        listeners = [system.listener(f"listener{i}") for i in range(2)]
        assert qingjian.wait_for_client(30), system.dump_logs()
        for port in ports:
            stores.wait_until(lambda: web_healthy(f"http://127.0.0.1:{port}"), 30, 0.2, f"web on {port}")

        due = datetime.now(timezone.utc) + timedelta(seconds=40)
        bodies = task_bodies(n_tasks, due)
        session = requests.Session()
        session.headers["X-API-Key"] = processes.API_KEY

        def post(item):
            index, body = item
            answer = session.post(f"http://127.0.0.1:{ports[index % 2]}/api/task/receive", json=body, timeout=30)
            return answer.status_code

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            codes = Counter(tqdm(pool.map(post, enumerate(bodies)), total=len(bodies), desc="tasks in"))
        report["intake_seconds"] = round(time.time() - started, 1)
        report["intake_codes"] = dict(codes)

        messages = messages_for(bodies, n_messages)
        half = len(messages) // 2
        for msg_id, who, content in tqdm(messages[:half], desc="messages (1st half)"):
            qingjian.say(who, content, msg_id=msg_id)
            time.sleep(0.001)

        # Kill the active listener and one beat; time how long until a listener is connected again.
        holder = redis.Redis.from_url(system.env["REDIS_URL"]).get(f"tw:lock:listener:{qingjian.url}").decode()
        active = next(p for p in listeners if f":{p.p.pid}:" in holder)
        killed_at = time.time()
        active.kill9()
        beats[0].kill9()
        stores.wait_until(lambda: _new_client_since(qingjian, killed_at), 30, 0.05,
                           "a standby listener to take over")
        report["listener_takeover_seconds"] = round(time.time() - killed_at, 2)
        # 轻简 redelivers what may have been in flight around the failover (same msg_ids: processed once).
        for msg_id, who, content in messages[max(0, half - 200):half]:
            qingjian.say(who, content, msg_id=msg_id)
        for msg_id, who, content in tqdm(messages[half:], desc="messages (2nd half)"):
            qingjian.say(who, content, msg_id=msg_id)
            time.sleep(0.001)
        for msg_id, who, content in messages[:300]:  # plain repeats of early messages
            qingjian.say(who, content, msg_id=msg_id)

        deadline = time.time() + 180
        engine = create_engine(db_url)
        while time.time() < deadline:
            with engine.connect() as conn:
                open_tasks = conn.execute(text(
                    "SELECT COUNT(*) FROM tasks WHERE status NOT IN ('completed','failed','timeout','cancelled')"
                )).scalar()
            if open_tasks == 0:
                break
            time.sleep(1)
        stores.wait_until(lambda: sum(1 for b in tianwang.events.values() if b["status"] == "completed") >= n_tasks,
                           120, 0.5, "every completed callback")
        with engine.connect() as conn:
            statuses = dict(conn.execute(text("SELECT status, COUNT(*) FROM tasks GROUP BY status")).all())
        engine.dispose()
        sends = Counter(s["req_id"].rsplit(":", 2)[0] for s in qingjian.sent)
        delivered = Counter(body["task_id"] for body in tianwang.events.values() if body["status"] == "completed")
        report.update({
            "statuses": statuses,
            "tasks_sent_once": sum(1 for b in bodies if sends.get(b["task_id"]) == 1),
            "tasks_sent_twice_or_more": sum(1 for c in sends.values() if c > 1),
            "tasks_never_sent": sum(1 for b in bodies if b["task_id"] not in sends),
            "completed_callbacks": len(delivered),
            "retransmissions_ignored_by_fake": qingjian.duplicates_ignored,
            "elapsed_seconds": round(time.time() - started, 1),
        })
        report["ok"] = (report["tasks_sent_twice_or_more"] == 0 and report["tasks_never_sent"] == 0
                        and statuses.get("completed") == n_tasks and report["listener_takeover_seconds"] <= 10)
        return report


def _new_client_since(qingjian: FakeQingjian, moment: float) -> bool:
    return any(t > moment for t in qingjian.connect_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    report = run(args.tasks, args.messages)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    raise SystemExit(0 if report.get("ok") else 1)


if __name__ == "__main__":
    main()
