"""Logging for the service processes: one JSON object per line on stderr, uvicorn's loggers included.

The request log (`cube.http`, one line per request from `TelemetryMiddleware`) is already JSON and
passes through as is; other records are wrapped as {"ts", "level", "logger", "message"}. uvicorn's
own access log is off: the request log replaces it and carries the request id.
"""
from __future__ import annotations

import json
import logging
import time


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "cube.http":
            return message
        out = {"ts": round(time.time(), 3), "level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def log_config(level: str = "info") -> dict:
    """A logging.config.dictConfig for uvicorn's `log_config=`."""
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "cube": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
