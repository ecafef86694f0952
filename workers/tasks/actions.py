"""actions.drain, actions.advance and actions.resume: fired tasks' actions, which never block a worker."""
from celery import shared_task

from app import queueing
from app.services import actions
from workers.tasks.messages import TRANSIENT


def _advance(answers: list) -> None:
    actions.advance([(req_id, bool(ok), error) for req_id, ok, error in answers])


@shared_task(name="actions.drain", autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=30,
             retry_jitter=True, max_retries=10)
def drain(slot: int = 0) -> int:
    """轻简's answers waiting in the `answers` inbox: each send's next step goes, or its task finishes or retries."""
    return queueing.inbox("answers").drain(_advance, slot, transient=TRANSIENT)


@shared_task(name="actions.advance", autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=30,
             retry_jitter=True, max_retries=10)
def advance(answers: list) -> None:
    """Answers queued as one message (by a listener of the previous version): handled as a drain does."""
    _advance(answers)


@shared_task(name="actions.resume", autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=30,
             retry_jitter=True, max_retries=10)
def resume(task_ids: list) -> None:
    """Running tasks whose lease lapsed: a retry that is due, or an action whose worker or answer was lost."""
    actions.resume(list(task_ids))


@shared_task(name="tasks.run_action")
def run_action(task_id: str) -> None:
    """A message of the previous version (one task's whole action); now the same as a resume."""
    actions.resume([task_id])
