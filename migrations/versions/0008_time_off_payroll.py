"""Teachers' time off, who taught a lesson, pay rates (issue 15, items 2 and 3).

- time_off: a teacher away from starts_on to ends_on (both included), optionally with a
  substitute (never the teacher themself).
- attendance.taught_by_id, makeup.taught_by_id: the substitute who taught that lesson; empty =
  the slot's teacher. Payroll pays whoever taught.
- teacher.rate_cents: pay per lesson taught, in cents (not negative); empty = not set.

On SQLite the batch rebuild of makeup keeps its partial index `uq_makeup_taken_slot_date`
(with its WHERE; tests/test_migrations.py checks the schema after a round trip).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:00:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base


revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('time_off',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('teacher_id', sa.Integer(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('substitute_id', sa.Integer(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ends_on >= starts_on', name=op.f('ck_time_off_dates_ordered')),
    sa.CheckConstraint('substitute_id IS NULL OR substitute_id <> teacher_id', name=op.f('ck_time_off_substitute_not_self')),
    sa.ForeignKeyConstraint(['substitute_id'], ['teacher.id'], name=op.f('fk_time_off_substitute_id_teacher'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['teacher_id'], ['teacher.id'], name=op.f('fk_time_off_teacher_id_teacher'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_time_off'))
    )
    with op.batch_alter_table('time_off', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_time_off_substitute_id'), ['substitute_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_time_off_teacher_id'), ['teacher_id'], unique=False)

    for table in ('attendance', 'makeup'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('taught_by_id', sa.Integer(), nullable=True))
            batch_op.create_foreign_key(
                batch_op.f(f'fk_{table}_taught_by_id_teacher'), 'teacher', ['taught_by_id'], ['id'], ondelete='RESTRICT'
            )
    with op.batch_alter_table('teacher', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rate_cents', sa.Integer(), nullable=True))
        batch_op.create_check_constraint('rate_not_negative', sa.text('rate_cents IS NULL OR rate_cents >= 0'))


def downgrade() -> None:
    with op.batch_alter_table('teacher', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_teacher_rate_not_negative'), type_='check')
        batch_op.drop_column('rate_cents')
    for table in ('makeup', 'attendance'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_taught_by_id_teacher'), type_='foreignkey')
            batch_op.drop_column('taught_by_id')

    with op.batch_alter_table('time_off', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_time_off_teacher_id'))
        batch_op.drop_index(batch_op.f('ix_time_off_substitute_id'))

    op.drop_table('time_off')
