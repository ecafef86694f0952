"""Mutation checks: would the suite notice if one of the product's promises broke?

Each mutation names one or more edits (a file, an exact snippet in it, what replaces the snippet) and
the tests that must fail once it is applied. The runner applies one mutation at a time in the working tree, runs its tests
in one pytest process, puts the file back, and reports which tests killed it (failed) and whether it
survived (all passed). A snippet that is not in its file exactly once is an error, so a list gone stale
after a change to the code is noticed at once; fix the snippet (keep it small) and run it again.

    .venv/bin/python -m tests.mutations                # every mutation (~3 min on a quiet 2-core machine)
    .venv/bin/python -m tests.mutations --list         # what there is
    .venv/bin/python -m tests.mutations send-once cas  # only these (by name)
    .venv/bin/python -m tests.mutations --no-baseline  # skip the unmutated run of the same tests first
    .venv/bin/python -m tests.mutations hmac --against tests/integration   # which of these kill it?

A mutation marked `pending` waits for code that is not in this tree yet: it is reported as pending when
its snippet is absent, and run like any other once it is there (then drop the mark). The file being
mutated is copied to `<file>.mutation-backup` first; a backup left behind by a run that was killed is
put back (and said so) before anything else happens. See tests/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKUP_SUFFIX = ".mutation-backup"
LOG_DIR = ROOT / "var" / "mutations"


@dataclass(frozen=True)
class Edit:
    file: str  # relative to the project root
    old: str  # exactly once in the file
    new: str


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str  # what breaks when the mutation is applied
    edits: tuple[Edit, ...]  # applied together (one promise may be kept in two places)
    tests: tuple[str, ...]  # pytest node ids that must fail
    pending: str = ""  # why a snippet may be absent (code not merged yet); empty when it must be there


MUTATIONS = (
    Mutation(
        "send-once", "the send hand-off no longer queues a req_id once",
        (Edit("app/clients/qingjian/channel.py", "if earlier then return earlier end\n", "\n"),),
        ("tests/integration/test_redis_handoffs.py::test_a_req_id_is_queued_once",
         "tests/integration/test_sends_once.py::test_an_action_started_twice_while_its_send_is_in_flight_sends_the_step_once")),
    Mutation(
        "retry-resends", "a retry starts over at the first step, re-sending what 轻简 acknowledged",
        (Edit("app/services/actions/__init__.py",
              "step = plan.first_unacknowledged(task.progress, len(plan.plan_steps(task.action)))", "step = 0"),),
        ("tests/integration/test_retries.py::test_two_refusals_then_success_completes_without_resending_the_acknowledged_text",
         "tests/integration/test_retries.py::test_a_refused_file_after_a_delivered_text_fails_without_sending_the_text_again")),
    Mutation(
        "cas", "a status move (app.state.cas) without its status condition",
        (Edit("app/state/cas.py", "update(model).where(column == key, model.status == expected, *where)",
              "update(model).where(column == key, *where)"),),
        ("tests/api/test_concurrency.py::test_twenty_threads_claim_one_task_exactly_one_wins",
         "tests/api/test_concurrency.py::test_claims_racing_a_cancel_have_exactly_one_winner")),
    Mutation(
        "claim-cas", "a batch claim (matching, timers: move_many) without its status condition",
        (Edit("app/state/tasks.py", "update(Task).where(held, Task.status == source)", "update(Task).where(held)"),),
        ("tests/api/test_concurrency.py::test_twenty_batch_claims_of_one_task_exactly_one_wins",
         "tests/api/test_concurrency.py::test_a_batch_claim_passes_over_a_task_that_no_longer_waits")),
    Mutation(
        "msg-dedup-redis", "while the database is away, Redis's mark no longer tells a repeated msg_id apart",
        (Edit("app/registry.py", "if seen ~= '' and gate and not redis.call('set', seen, 1, 'NX', 'EX', ARGV[1]) then",
              "if false then"),),
        ("tests/integration/test_redis_handoffs.py::test_a_msg_id_is_let_through_once_and_remembered_once",)),
    Mutation(
        "msg-dedup", "a msg_id seen before is processed again (Redis's first look and SQL's unique row ignored)",
        (Edit("app/registry.py", "return [bool(next(found)) if key else False for key in seen_keys]",
              "return [False for key in seen_keys]"),
         Edit("workers/listener/inbound.py",
              "handed = [(a, key, row) for (a, key), row in zip(fresh, rows) if row is not None]",
              "handed = [(a, key, row) for (a, key), row in zip(fresh, rows)]")),
        ("tests/integration/test_inbound_record.py::"
         "test_the_same_msg_id_from_two_qingjian_urls_is_accepted_from_each_and_once_from_one",
         "tests/integration/test_inbound_record.py::"
         "test_a_redelivery_after_redis_lost_its_marks_is_not_recorded_or_matched_twice")),
    Mutation(
        "inbox-keeps-taken", "a batch a drain took is forgotten, so a worker killed mid-batch loses it",
        (Edit("app/infra/inbox.py", "redis.call('hset', KEYS[2], ARGV[2], cjson.encode(items))\n", "\n"),),
        ("tests/integration/test_inbox.py::"
         "test_a_drain_killed_mid_batch_leaves_it_to_go_back_at_the_head_when_its_time_is_up",)),
    Mutation(
        "inbox-last-look", "a drain ends without its last look, so an item pushed as it ends waits for beat",
        (Edit("app/infra/inbox.py", "        return not (self.r.llen(self.key) and", "        return True or not ("
              "self.r.llen(self.key) and"),),
        ("tests/integration/test_inbox.py::test_a_put_racing_the_end_of_a_drain_is_taken_by_it_or_wakes_another",)),
    Mutation(
        "callback-last-look", "a flush ends without its last look, so a callback committed as it ends waits for beat",
        (Edit("app/services/callbacks.py", "claim = claim_due(BATCH, limits.claim_window)  # the last look",
              "claim = Claim(claim.token, [])"),),
        ("tests/api/test_callback_delivery.py::"
         "test_a_callback_committed_as_a_flush_finds_nothing_due_is_still_delivered_by_it",)),
    Mutation(
        "mark-merge", "a message that fired before and fires again loses what it fired the first time",
        (Edit("app/services/inbound.py", "if conn.execute(_MARK_FIRST, params[0] if len(params) == 1 else params)"
              ".rowcount == len(firing):", "if conn.execute(_MARK_FIRST, params) or True:"),),
        ("tests/integration/test_inbound_marks.py::"
         "test_a_batch_marks_each_message_with_what_it_fired_keeping_what_it_fired_before",)),
    Mutation(
        "record-reconnect", "the record fails on the first use of a connection the database dropped",
        (Edit("app/services/inbound.py", "        if not exc.connection_invalidated:\n            raise\n",
              "        raise\n"),),
        ("tests/integration/test_inbound_marks.py::test_the_record_survives_the_database_dropping_its_connections"
         "[postgresql]",)),
    Mutation(
        "callback-claim-cas", "two senders reading the same due rows both claim them",
        (Edit("app/services/callbacks.py", 'CallbackOutbox.event_id.in_(due), CallbackOutbox.state == "pending",',
              "CallbackOutbox.event_id.in_(due),"),
         Edit("app/services/callbacks.py", "CallbackOutbox.next_attempt_at <= now)\n            .values(attempts=",
              "True)\n            .values(attempts=")),
        ("tests/api/test_callback_delivery.py::"
         "test_senders_claiming_at_once_each_take_a_row_once_and_leave_none[postgresql]",)),
    Mutation(
        "catch-up-lookback", "registration's catch-up ignores lookback_seconds",
        (Edit("app/services/firing.py", 'since = spec["ts"] - spec.get("lb", 0.0)', 'since = spec["ts"]'),),
        ("tests/integration/test_triggers_e2e.py::test_lookback_covers_a_message_said_before_the_task",
         "tests/integration/test_triggers_e2e.py::test_lookback_any_customer_trigger")),
    Mutation(
        "settle-owner", "a callback flush settles rows another flush has claimed since",
        (Edit("app/services/callbacks.py",
              'CallbackOutbox.state == "pending", CallbackOutbox.next_attempt_at == claim.token)',
              'CallbackOutbox.state == "pending")'),),
        # Not test_a_settled_row_is_not_settled_again_by_a_late_owner: there the row is delivered, which the
        # state condition this mutation keeps refuses anyway (and so does the token alone: a settled row's
        # next_attempt_at is no claim's token), so it cannot fail here.
        ("tests/api/test_callback_delivery.py::test_a_lapsed_claim_taken_by_another_flush_is_settled_by_that_flush_only",)),
    Mutation(
        "hmac", "the X-Tianwang-Signature header is not sent",
        (Edit("app/clients/tianwang.py", 'headers["X-Tianwang-Signature"] = sign(raw, secret)', "pass"),),
        ("tests/test_tianwang_client.py::test_the_body_event_id_and_signature_go_on_the_wire",
         "tests/integration/test_spine.py::test_customer_reply_sends_the_file_and_calls_back")),
)


class StaleMutation(Exception):
    """A snippet that is not in its file exactly once: the list needs updating."""


def _backup(file: str) -> Path:
    path = ROOT / file
    return path.with_name(path.name + BACKUP_SUFFIX)


def restore_leftovers() -> None:
    """Put back any file a killed run left mutated."""
    for file in dict.fromkeys(edit.file for m in MUTATIONS for edit in m.edits):
        if _backup(file).exists():
            shutil.move(_backup(file), ROOT / file)
            print(f"!! restored {file} from a backup a killed run left behind", flush=True)


def applicable(mutation: Mutation) -> bool:
    """True if every snippet is there exactly once; False for a pending mutation whose code is absent."""
    for edit in mutation.edits:
        path = ROOT / edit.file
        found = path.read_text(encoding="utf-8").count(edit.old) if path.exists() else 0
        if found == 0 and mutation.pending:
            return False
        if found != 1:
            raise StaleMutation(f"{mutation.name}: the snippet {edit.old!r} is in {edit.file} {found} times "
                                "(it must be there exactly once): update tests/mutations.py")
    return True


def run_tests(tests: tuple[str, ...], label: str) -> dict[str, str]:
    """{node id: passed | failed | error | skipped} of one pytest run of `tests`."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no .pyc of mutated code survives the run
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                               "junit_family=xunit1", f"--junitxml={report}", *tests],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode in (4, 5) or not report.exists():  # usage error / nothing collected
            raise StaleMutation(f"{label}: pytest could not run {tests} (exit {proc.returncode}):\n"
                                + proc.stdout[-3000:])
        outcomes = _outcomes(report)
    log = LOG_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{label.split()[0]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout, encoding="utf-8")
    print(f"   {label}: {time.monotonic() - started:.0f}s, pytest's output in {log.relative_to(ROOT)}", flush=True)
    return outcomes


_RANK = ("passed", "skipped", "error", "failed")  # a test's worst case wins (parametrized runs)


def _outcomes(report: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        node = f"{case.get('file')}::{case.get('name', '').split('[')[0]}"
        kinds = {child.tag for child in case}
        state = next((kind for kind in ("failure", "error", "skipped") if kind in kinds), "passed")
        state = "failed" if state == "failure" else state
        found[node] = max(found.get(node, "passed"), state, key=_RANK.index)
    return found


def mutate(mutation: Mutation) -> dict[str, str]:
    """Apply `mutation`, run its tests, put the files back; the tests' outcomes."""
    originals: dict[str, str] = {}
    try:
        for edit in mutation.edits:
            path = ROOT / edit.file
            if edit.file not in originals:
                originals[edit.file] = path.read_text(encoding="utf-8")
                shutil.copy2(path, _backup(edit.file))
            path.write_text(path.read_text(encoding="utf-8").replace(edit.old, edit.new, 1), encoding="utf-8")
        return run_tests(mutation.tests, f"{mutation.name} applied")
    finally:
        for file, text in originals.items():
            (ROOT / file).write_text(text, encoding="utf-8")
            _backup(file).unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the tests")
    parser.add_argument("--against", nargs="+", metavar="TEST", default=None,
                        help="run these tests (paths or node ids) instead of each mutation's own list")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"no such mutation: {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    if args.against:
        chosen = [replace(m, tests=tuple(args.against)) for m in chosen]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.promise}" + "".join(f"\n  {e.file}: {e.old!r} -> {e.new!r}" for e in m.edits) +
                  (f"\n  pending: {m.pending}" if m.pending else "") + "".join(f"\n  - {t}" for t in m.tests))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` puts the file back
    restore_leftovers()
    try:
        ready = [m for m in chosen if applicable(m)]
    except StaleMutation as exc:
        print(f"STALE: {exc}", file=sys.stderr)
        return 2
    for m in chosen:
        if m not in ready:
            print(f"-- {m.name}: PENDING ({m.pending})")
    if not args.no_baseline and ready:
        tests = tuple(dict.fromkeys(t for m in ready for t in m.tests))
        baseline = run_tests(tests, "baseline (nothing mutated)")
        broken = {t: s for t, s in baseline.items() if s != "passed"}
        if broken:
            print(f"BASELINE NOT GREEN, fix these first: {broken}", file=sys.stderr)
            return 2
    survived = []
    for m in ready:
        print(f"-- {m.name}: {m.promise}", flush=True)
        outcomes = mutate(m)
        killers = [t for t, state in outcomes.items() if state in ("failed", "error")]
        for test, state in sorted(outcomes.items()):
            print(f"   {'KILLED by' if state in ('failed', 'error') else 'survived'} {test} ({state})")
        print(f"   => {'killed by ' + str(len(killers)) + ' test(s)' if killers else 'SURVIVED'}", flush=True)
        if not killers:
            survived.append(m.name)
    if survived:
        print(f"SURVIVED: {', '.join(survived)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
