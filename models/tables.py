"""Import every table module so `SQLModel.metadata` is complete (Alembic, tests, export)."""

from sqlmodel import SQLModel

from models.attendance import Attendance, MakeUp
from models.audit import AuditLog
from models.billing import Plan, StripeEvent
from models.enrollment import Enrollment
from models.money_events import Dispute, StripeRefund
from models.outbox import DeadLetter, EmailLog, IdempotencyRecord
from models.people import Instrument, Payee, Student, Teacher, TeacherInstrument
from models.scheduling import Semester, SemesterClosure, Timeslot

metadata = SQLModel.metadata

TABLES = {
    model.__tablename__: model
    for model in (
        Instrument,
        Teacher,
        TeacherInstrument,
        Payee,
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
    )
}
