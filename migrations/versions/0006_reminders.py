"""Lesson reminders by email and SMS (issue 14, Reminders).

- sms_log: one row per text message, written before it is sent (like email_log): recipient in
  E.164, template, context, the rendered body, status queued|sending|sent|failed, attempts,
  the provider's sid and status, error, and a unique dedupe key (a reminder's:
  `reminder:<enrollment|makeup>-<id>:<date>:sms`; its email twin keys email_log the same way).
- payee.remind_by_email (default true) and payee.remind_by_sms (default false): the family's
  reminder channels. payee.phone keeps its column; new numbers are stored in E.164.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:40:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base


revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('sms_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('template', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(length=640), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('provider_sid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('provider_status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed')", name=op.f('ck_sms_log_status_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_log')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_sms_log_dedupe_key'))
    )
    op.create_index(op.f('ix_sms_log_recipient'), 'sms_log', ['recipient'], unique=False)
    op.create_index(op.f('ix_sms_log_status'), 'sms_log', ['status'], unique=False)
    with op.batch_alter_table('payee') as batch_op:
        batch_op.add_column(sa.Column('remind_by_email', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('remind_by_sms', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('payee') as batch_op:
        batch_op.drop_column('remind_by_sms')
        batch_op.drop_column('remind_by_email')
    op.drop_index(op.f('ix_sms_log_status'), table_name='sms_log')
    op.drop_index(op.f('ix_sms_log_recipient'), table_name='sms_log')
    op.drop_table('sms_log')
