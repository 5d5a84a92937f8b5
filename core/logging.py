"""Logging helpers: every log line names the schema it was written in."""

import logging

from django.db import connection


class SchemaFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.schema = getattr(connection, "schema_name", "-")
        return True
