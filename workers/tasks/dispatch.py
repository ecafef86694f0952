"""dispatch.advance and dispatch.sweep: the transfer-to-designer workflow (CONTRACTS.md §3)."""
from celery import shared_task

from app import runtime
from app.infra.locks import first_in_period
from app.services import dispatch
from workers.tasks.messages import TRANSIENT


# What a retry may cure (the service's RETRYABLE, recorded on its step first, and infrastructure hiccups);
# a step past its limit is given up by the service, which then returns normally, so max_retries is only
# a backstop: beat's sweep re-drives a dispatch whose retries ran out.
@shared_task(name="dispatch.advance", autoretry_for=(*dispatch.RETRYABLE, *TRANSIENT), retry_backoff=True,
             retry_backoff_max=30, retry_jitter=True, max_retries=30)
def advance(dispatch_id: str, token: str) -> str:
    """Run the dispatch's next unfinished steps (find, create, assign, notify, reply)."""
    return dispatch.advance(dispatch_id, token)


@shared_task(name="dispatch.sweep", ignore_result=True, send_events=False)  # a beat sweep: see maintenance
def sweep() -> int | None:
    """Re-drive dispatches whose next attempt is due (designer re-checks, lapsed leases)."""
    rt = runtime.current()
    if not first_in_period(rt.redis, rt.keys.lock("dispatch-sweep"), 5000):
        return None
    return dispatch.sweep()
