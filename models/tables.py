"""Import every table module so `SQLModel.metadata` is complete (Alembic, tests, export)."""

import sqlalchemy as sa
from sqlmodel import SQLModel

from models.access import PayeeInvite
from models.attendance import Attendance, MakeUp
from models.audit import AuditLog
from models.billing import Plan, StripeEvent
from models.enrollment import Enrollment
from models.health import JobRun, WorkerHeartbeat
from models.locations import Location, Room
from models.money_events import Dispute, StripeRefund
from models.outbox import DeadLetter, EmailLog, IdempotencyRecord
from models.people import Instrument, Payee, Student, Teacher, TeacherInstrument
from models.scheduling import Semester, SemesterClosure, Timeslot
from models.sms import SmsLog
from models.time_off import TimeOff
from models.waitlist import WaitlistEntry, WaitlistOffer

metadata = SQLModel.metadata

TABLES = {
    model.__tablename__: model
    for model in (
        Instrument,
        Teacher,
        TeacherInstrument,
        Payee,
        PayeeInvite,
        Student,
        Timeslot,
        Semester,
        SemesterClosure,
        Plan,
        Enrollment,
        Attendance,
        MakeUp,
        EmailLog,
        StripeEvent,
        DeadLetter,
        AuditLog,
        IdempotencyRecord,
        Dispute,
        StripeRefund,
        WorkerHeartbeat,
        JobRun,
        SmsLog,
        WaitlistEntry,
        WaitlistOffer,
        TimeOff,
        Location,
        Room,
    )
}


def row_counts(connection) -> dict[str, int]:
    """How many rows each of our tables holds, by name; tables the database does not have (yet)
    are left out. (What a downgrade would put at risk.)"""
    present = set(sa.inspect(connection).get_table_names())
    return {
        table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        for table in metadata.sorted_tables
        if table.name in present
    }
