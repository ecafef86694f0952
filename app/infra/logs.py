"""Logging: one JSON object per line, with the task id, and phone / ID-card numbers masked."""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone

# Order matters: an 18-character ID number contains 11-digit runs that look like phone numbers.
# Digits that are part of a decimal number (a duration, an amount) are not identities.
_ID_CARD = re.compile(r"(?<![\d.])(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx]|\.\d)")
_PHONE = re.compile(r"(?<![\d.])((?:\+?86)?1[3-9]\d)\d{4}(\d{4})(?!\d|\.\d)")


def mask(text: str) -> str:
    text = _ID_CARD.sub(r"\1********\2", text)
    return _PHONE.sub(r"\1****\2", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str):
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "process": self.process_name,
            "pid": record.process,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        for key in ("task_id", "event"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(process_name: str, level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(process_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    # Celery logs every task received/succeeded at INFO; beat's half-second ticks would drown the
    # log, so those go to WARNING and our services log what happened to which task instead.
    for noisy in ("urllib3", "websocket", "kombu", "amqp", "celery.app.trace", "celery.worker.strategy",
                  "celery.beat"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
