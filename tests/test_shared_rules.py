"""Rules that moved to the module of the highest area they read (archiving a student is an
enrollment rule), "still referenced" checks left to the database's RESTRICT, and the one
"email the family and alert the admins" (`notify`) with the admins read from the settings."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from models.audit import AuditLog
from models.booking import assign_enrollment
from models.config import reset_settings
from models.db import session_scope
from models.enrollment import archive_student, cancel_enrollment
from models.errors import Conflict
from models.outbox import EmailLog, notify, queue_admin_alert
from models.people import Instrument, Student, remove_instrument, update_teacher
from tests import factories

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _assigned(session, instrument="piano"):
    teacher = factories.teacher(session, instruments=(instrument,))
    slot = factories.timeslot(session, teacher_row=teacher, weekday=0, start="16:00")
    factories.semester(session, starts=date(2026, 9, 7), ends=date(2026, 12, 19))
    student = factories.student(session)
    session.commit()
    with session_scope() as unit:
        enrollment = assign_enrollment(
            unit,
            student_id=student.id,
            timeslot_id=slot.id,
            instrument=instrument,
            plan=None,
            offline=True,
            actor="admin",
            now=NOW,
        )
    return teacher, student, enrollment


def test_an_instrument_with_enrollment_history_is_kept_by_the_database(session):
    """people knows neither enrollments nor make-ups: the RESTRICT foreign keys refuse the
    delete, the refusal is a Conflict, and nothing is removed or audited."""
    teacher, _, enrollment = _assigned(session, "cello")
    with session_scope() as unit:
        with pytest.raises(Conflict, match="1 teacher"):
            remove_instrument(unit, name="cello", actor="admin")
        update_teacher(unit, unit.get(type(teacher), teacher.id), instruments=[], actor="admin")
        with pytest.raises(Conflict, match="history and cannot be removed"):
            remove_instrument(unit, name="cello", actor="admin")
    assert session.exec(select(Instrument).where(Instrument.name == "cello")).first() is not None
    assert session.exec(select(AuditLog).where(AuditLog.action == "instrument.remove")).all() == []


def test_an_unused_instrument_is_removed_and_audited(session):
    factories.instrument(session, "banjo")
    session.commit()
    with session_scope() as unit:
        remove_instrument(unit, name="banjo", actor="admin")
    assert session.exec(select(Instrument).where(Instrument.name == "banjo")).first() is None
    [audit] = session.exec(select(AuditLog).where(AuditLog.action == "instrument.remove")).all()
    assert audit.before["name"] == "banjo" and audit.actor == "admin"


def test_archiving_a_student_waits_for_their_live_enrollment(session):
    _, student, enrollment = _assigned(session)
    with session_scope() as unit:
        with pytest.raises(Conflict, match="cancel it first"):
            archive_student(unit, unit.get(Student, student.id), actor="admin")
    with session_scope() as unit:
        cancel_enrollment(unit, enrollment, reason="moving away", actor="admin")
        archive_student(unit, unit.get(Student, student.id), actor="admin")
    session.expire_all()
    assert session.get(Student, student.id).archived_at is not None


def test_admin_alerts_go_to_the_admins_of_the_settings(session, monkeypatch):
    monkeypatch.setenv("ADMIN_EMAIL_ALLOWLIST", "Boss@Studio.test, desk@studio.test")
    reset_settings()
    rows = queue_admin_alert(session, subject="Roof", message="it leaks", dedupe_key="roof")
    assert [(row.recipient, row.dedupe_key) for row in rows] == [
        ("boss@studio.test", "roof:boss@studio.test"),
        ("desk@studio.test", "roof:desk@studio.test"),
    ]
    assert queue_admin_alert(session, subject="Roof", message="it leaks", dedupe_key="roof") == []
    monkeypatch.setenv("ADMIN_EMAIL_ALLOWLIST", "")
    reset_settings()
    assert queue_admin_alert(session, subject="Roof", message="again", dedupe_key="roof-2") == []


def test_notify_emails_the_family_and_alerts_the_admins_once(session):
    family = factories.payee(session)
    for _ in range(2):
        notify(
            session,
            family=family,
            template="hold_expired",
            context={"student_name": "Mia"},
            dedupe_key="k:1",
            admin_subject="Hold 1 expired",
            admin_message="Mia's hold expired.",
        )
    rows = session.exec(select(EmailLog).order_by(EmailLog.id)).all()
    assert [(row.template, row.recipient, row.dedupe_key) for row in rows] == [
        ("hold_expired", family.email, "k:1"),
        ("admin_alert", "admin@studio.test", "k:1:admin@studio.test"),
    ]
    assert rows[0].context == {"student_name": "Mia"}
    assert rows[1].context == {"alert_subject": "Hold 1 expired", "message": "Mia's hold expired."}
