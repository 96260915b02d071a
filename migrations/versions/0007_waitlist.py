"""The waiting list and its offers (issue 14, Waitlist and offers).

- waitlist_entry: a student waiting for a slot of an instrument (teacher, weekdays, time window
  optional), open | booked | removed.
- waitlist_offer: a slot offered to an entry until expires_at, open | accepted | declined |
  lapsed; at most one open offer per slot and per entry (partial unique indexes).
- enrollment: a new live status `offered` (the offer's hold on the slot): in the status check
  and in the date-range rule's predicate (PostgreSQL's exclusion constraint, SQLite's triggers,
  which the batch rebuild of enrollment drops: made again). The downgrade ends open offers'
  holds (`offered` → `expired`) first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:45:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base


revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CONSTRAINT = "ex_enrollment_live_slot_dates"  # models.enrollment.SLOT_DATES_CONSTRAINT
OLD_LIVE_VALUES = "('provisional', 'active', 'past_due', 'action_required', 'paused')"
NEW_LIVE_VALUES = "('provisional', 'active', 'past_due', 'action_required', 'paused', 'offered')"
OLD_STATUSES = "status IN ('provisional', 'active', 'past_due', 'failed', 'expired', 'cancelled', 'action_required', 'paused')"
NEW_STATUSES = (
    "status IN ('provisional', 'active', 'past_due', 'failed', 'expired', 'cancelled', 'action_required', 'paused', 'offered')"
)

_OVERLAP = """
    SELECT RAISE(ABORT, '{constraint}: a live enrollment of this timeslot overlaps these dates')
    WHERE EXISTS (
        SELECT 1 FROM enrollment AS other
        WHERE other.timeslot_id = NEW.timeslot_id
          AND other.status IN {live}
          AND other.start_date <= COALESCE(NEW.end_date, '9999-12-31')
          AND NEW.start_date <= COALESCE(other.end_date, '9999-12-31')
          {exclude_self}
    );
"""


def _triggers(live: str) -> list[str]:
    insert = _OVERLAP.format(constraint=CONSTRAINT, live=live, exclude_self="")
    update = _OVERLAP.format(constraint=CONSTRAINT, live=live, exclude_self="AND other.id <> OLD.id")
    return [
        f"CREATE TRIGGER {CONSTRAINT}_insert BEFORE INSERT ON enrollment WHEN NEW.status IN {live} BEGIN {insert} END",
        f"CREATE TRIGGER {CONSTRAINT}_update BEFORE UPDATE OF timeslot_id, status, start_date, end_date ON enrollment "
        f"WHEN NEW.status IN {live} BEGIN {update} END",
    ]


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _set_live(old_statuses: str, new_statuses: str, live: str) -> None:
    if _postgres():
        op.execute(f"ALTER TABLE enrollment DROP CONSTRAINT {CONSTRAINT}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {CONSTRAINT}_insert")
        op.execute(f"DROP TRIGGER IF EXISTS {CONSTRAINT}_update")
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_enrollment_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', sa.text(new_statuses))
    if _postgres():
        op.execute(
            f"ALTER TABLE enrollment ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist "
            f"(timeslot_id WITH =, daterange(start_date, end_date, '[]') WITH &&) WHERE (status IN {live})"
        )
    else:
        for trigger in _triggers(live):  # after the batch rebuild of enrollment, which drops a table's triggers
            op.execute(trigger)


def upgrade() -> None:
    op.create_table('waitlist_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('instrument_id', sa.Integer(), nullable=False),
    sa.Column('teacher_id', sa.Integer(), nullable=True),
    sa.Column('weekdays', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('earliest_minute', sa.Integer(), nullable=True),
    sa.Column('latest_minute', sa.Integer(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('earliest_minute IS NULL OR earliest_minute BETWEEN 0 AND 1439', name=op.f('ck_waitlist_entry_earliest_range')),
    sa.CheckConstraint('latest_minute IS NULL OR latest_minute BETWEEN 0 AND 1439', name=op.f('ck_waitlist_entry_latest_range')),
    sa.CheckConstraint("status IN ('open', 'booked', 'removed')", name=op.f('ck_waitlist_entry_status_known')),
    sa.ForeignKeyConstraint(['instrument_id'], ['instrument.id'], name=op.f('fk_waitlist_entry_instrument_id_instrument'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['student_id'], ['student.id'], name=op.f('fk_waitlist_entry_student_id_student'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['teacher_id'], ['teacher.id'], name=op.f('fk_waitlist_entry_teacher_id_teacher'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entry'))
    )
    with op.batch_alter_table('waitlist_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waitlist_entry_instrument_id'), ['instrument_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_waitlist_entry_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_waitlist_entry_student_id'), ['student_id'], unique=False)

    op.create_table('waitlist_offer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('timeslot_id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=True),
    sa.Column('booking_id', sa.Integer(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('open', 'accepted', 'declined', 'lapsed')", name=op.f('ck_waitlist_offer_status_known')),
    sa.ForeignKeyConstraint(['booking_id'], ['enrollment.id'], name=op.f('fk_waitlist_offer_booking_id_enrollment'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], name=op.f('fk_waitlist_offer_enrollment_id_enrollment'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['entry_id'], ['waitlist_entry.id'], name=op.f('fk_waitlist_offer_entry_id_waitlist_entry'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['student.id'], name=op.f('fk_waitlist_offer_student_id_student'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['timeslot_id'], ['timeslot.id'], name=op.f('fk_waitlist_offer_timeslot_id_timeslot'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_offer'))
    )
    with op.batch_alter_table('waitlist_offer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waitlist_offer_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_waitlist_offer_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_waitlist_offer_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_waitlist_offer_student_id'), ['student_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_waitlist_offer_timeslot_id'), ['timeslot_id'], unique=False)
        batch_op.create_index('uq_waitlist_offer_open_entry', ['entry_id'], unique=True,
                              postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))
        batch_op.create_index('uq_waitlist_offer_open_slot', ['timeslot_id'], unique=True,
                              postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))

    _set_live(OLD_STATUSES, NEW_STATUSES, NEW_LIVE_VALUES)


def downgrade() -> None:
    # The old schema knows no `offered`: open offers' holds end (the slots are free again).
    op.execute("UPDATE enrollment SET status = 'expired' WHERE status = 'offered'")
    _set_live(NEW_STATUSES, OLD_STATUSES, OLD_LIVE_VALUES)
    op.drop_table('waitlist_offer')
    op.drop_table('waitlist_entry')
