"""`studioctl serve`: the gunicorn configuration it runs the API with."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

from tests.support.cli import ok


def test_access_log_never_records_the_calendar_token(monkeypatch):
    """The calendar feed's `?token=` is a credential: gunicorn's access line must leave it out."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    seen = {}

    def fake_run(self):
        seen["cfg"] = self.cfg

    monkeypatch.setattr(BaseApplication, "run", fake_run)
    ok("serve", "--port", "8123")
    cfg = seen["cfg"]
    assert cfg.bind == ["127.0.0.1:8123"] and cfg.accesslog == "-"
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/parent/calendar.ics?token=s3cr3t-calendar-token",
        "PATH_INFO": "/parent/calendar.ics",
        "QUERY_STRING": "token=s3cr3t-calendar-token",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_REFERER": "https://calendar.example/?token=s3cr3t-calendar-token",
    }
    response = SimpleNamespace(status="200 OK", sent=120, headers=[])
    atoms = Logger(cfg).atoms(response, SimpleNamespace(headers=[]), environ, datetime.timedelta(milliseconds=3))
    line = cfg.access_log_format % atoms
    assert "/parent/calendar.ics" in line and "200" in line
    assert "s3cr3t" not in line


def test_dev_server_runs_without_the_interactive_debugger(monkeypatch):
    from flask import Flask

    seen = {}
    monkeypatch.setattr(Flask, "run", lambda self, **kwargs: seen.update(kwargs))
    ok("serve", "--dev", "--port", "8124")
    assert seen["port"] == 8124 and seen["use_debugger"] is False
