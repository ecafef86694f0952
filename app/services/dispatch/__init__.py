"""Handing a customer over to a human designer through 图绘 (CONTRACTS.md §3, seed 002).

A dispatch comes from `POST /api/dispatch/transfer` or from a task's `transfer_to_designer` action.
One Celery task, `dispatch.advance(dispatch_id, token)`, runs the steps not yet finished, in order:
find a designer, create the 图绘 task, assign it, notify the designers' WeCom group, reply to the
customer. Each step is a `dispatch_steps` row (pending, done or failed), so a retry or a re-drive
skips what is finished. Retryable failures (图绘 or WeCom unavailable, WeCom's rate limit, 轻简 not
acknowledging) are recorded on the step and raised again, and the Celery task retries with backoff and
jitter; past the step's limit a find/create/assign failure fails the dispatch, a notify/reply failure
is given up and the dispatch stays assigned.

The package: `workflow` (start, advance, sweep), `steps` (what each step does), `ledger` (the step rows
and the lease every write renews).

Who drives a dispatch: whoever enqueues `dispatch.advance` first writes a fresh `token` into
`lease_owner` and hands it to the message, which alone may then work on the dispatch (Celery retries
carry the same token). `next_attempt_at` is when beat's `dispatch.sweep` should step in: the lapse of
that lease (renewed at every step), or the next check for an online designer. The sweep re-drives a
due dispatch under a new token, so a message that was lost, or a worker that died, costs a delay,
never a second 图绘 task: a create that may have gone through is looked for in `/dispatch/queue`
before creating again.
"""
from app.services.dispatch.ledger import RETRYABLE, SendFailed
from app.services.dispatch.workflow import advance, get, start, start_for_task, sweep

__all__ = ["RETRYABLE", "SendFailed", "advance", "get", "start", "start_for_task", "sweep"]
