"""A slot is held for dates, not forever; the columns the self-service week needs (issue 13).

- enrollment: the partial unique index "one live enrollment per slot" becomes the rule "no two
  live enrollments of one slot overlap in dates" (`start_date`..`end_date`, both included, an
  open end is forever). PostgreSQL: an exclusion constraint (btree_gist, `daterange(...) WITH
  &&`, partial on the live statuses). SQLite: BEFORE INSERT / BEFORE UPDATE triggers that
  abort with the constraint's name. A later migration that rebuilds `enrollment` in SQLite
  batch mode drops the triggers with the old table: it must create them again (`_triggers`).
- enrollment.cancel_at_period_end (cancelled by the family, live until its end_date) and
  enrollment.moved_from_id (the enrollment a move continues; one move from each).
- attendance: a new status `late_cancel` (called off inside the make-up notice: no credit).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CONSTRAINT = "ex_enrollment_live_slot_dates"  # models.enrollment.SLOT_DATES_CONSTRAINT
LIVE_VALUES = "('provisional', 'active', 'past_due', 'action_required', 'paused')"
LIVE = f"status IN {LIVE_VALUES}"
OLD_ATTENDANCE = "status IN ('present', 'excused', 'no_show', 'teacher_cancelled')"
NEW_ATTENDANCE = "status IN ('present', 'excused', 'no_show', 'teacher_cancelled', 'late_cancel')"

# SQLite keeps dates as ISO text: they compare as dates; an open end is the last date there is.
_OVERLAP = f"""
    SELECT RAISE(ABORT, '{CONSTRAINT}: a live enrollment of this timeslot overlaps these dates')
    WHERE EXISTS (
        SELECT 1 FROM enrollment AS other
        WHERE other.timeslot_id = NEW.timeslot_id
          AND other.status IN {LIVE_VALUES}
          AND other.start_date <= COALESCE(NEW.end_date, '9999-12-31')
          AND NEW.start_date <= COALESCE(other.end_date, '9999-12-31')
          {{exclude_self}}
    );
"""


def _triggers() -> list[str]:
    return [
        f"CREATE TRIGGER {CONSTRAINT}_insert BEFORE INSERT ON enrollment WHEN NEW.status IN {LIVE_VALUES} "
        f"BEGIN {_OVERLAP.format(exclude_self='')} END",
        f"CREATE TRIGGER {CONSTRAINT}_update BEFORE UPDATE OF timeslot_id, status, start_date, end_date ON enrollment "
        f"WHEN NEW.status IN {LIVE_VALUES} BEGIN {_OVERLAP.format(exclude_self='AND other.id <> OLD.id')} END",
    ]


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_at_period_end', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('moved_from_id', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_enrollment_moved_from_id'), ['moved_from_id'])
        batch_op.create_foreign_key(batch_op.f('fk_enrollment_moved_from_id_enrollment'), 'enrollment', ['moved_from_id'], ['id'], ondelete='SET NULL')
        batch_op.drop_index('uq_enrollment_live_timeslot', postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))

    with op.batch_alter_table('attendance', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_attendance_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', sa.text(NEW_ATTENDANCE))

    if _postgres():
        # btree_gist: `timeslot_id WITH =` in a GiST index (a trusted extension: the database's owner may create it).
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            f"ALTER TABLE enrollment ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist "
            f"(timeslot_id WITH =, daterange(start_date, end_date, '[]') WITH &&) WHERE ({LIVE})"
        )
    else:
        for trigger in _triggers():  # after the batch rebuild of enrollment, which drops a table's triggers
            op.execute(trigger)


def downgrade() -> None:
    # The old schema holds one live enrollment per slot, whatever their dates: a slot held by
    # two (one ending, the next booked after it) cannot go back without losing one of them.
    doubled = op.get_bind().execute(
        sa.text(f"SELECT timeslot_id FROM enrollment WHERE {LIVE} GROUP BY timeslot_id HAVING count(*) > 1")
    ).scalars().all()
    if doubled:
        raise RuntimeError(
            f"cannot downgrade below 0005: timeslot(s) {', '.join(map(str, doubled[:10]))} hold more than one live "
            "enrollment (in successive dates); cancel all but one of each first"
        )
    if _postgres():
        op.execute(f"ALTER TABLE enrollment DROP CONSTRAINT {CONSTRAINT}")  # btree_gist stays: others may use it
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {CONSTRAINT}_insert")
        op.execute(f"DROP TRIGGER IF EXISTS {CONSTRAINT}_update")

    # The old schema does not know `late_cancel`: like a no-show, a lesson missed without a credit.
    op.execute("UPDATE attendance SET status = 'no_show' WHERE status = 'late_cancel'")
    with op.batch_alter_table('attendance', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_attendance_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', sa.text(OLD_ATTENDANCE))

    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_index('uq_enrollment_live_timeslot', ['timeslot_id'], unique=True,
                              postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))
        batch_op.drop_constraint(batch_op.f('fk_enrollment_moved_from_id_enrollment'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_enrollment_moved_from_id'), type_='unique')
        batch_op.drop_column('moved_from_id')
        batch_op.drop_column('cancel_at_period_end')
