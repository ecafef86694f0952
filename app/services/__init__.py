"""Service functions: the work behind API views and Celery tasks, called with plain ids."""
