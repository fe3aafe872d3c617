"""Log set-up for c360 processes: readable lines on a terminal, one JSON object per line in
appliance mode. Library modules only create loggers; handlers are added here, once."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from c360.settings import Settings

#: Fields of a LogRecord that are not worth repeating in a JSON line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(settings: Settings, quiet: bool = False) -> None:
    """Install one stderr handler on the root logger, in the format the settings ask for."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    if quiet:
        level = max(level, logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
