"""Celery task modules (`@shared_task`, `domain.verb` names, thin: they call app.services)."""
