"""Money events and 3-D Secure: statuses `action_required` and `paused`, disputes, refunds.

- enrollment: two new live statuses; the partial unique index (one live enrollment per slot)
  and the status/hold checks are rebuilt to include them; the columns a payment waiting for
  the parent needs (`action_client_secret`, `action_url`) and `stripe_key_generation`.
- payee: `stripe_payment_method_id`, the default card as last seen in Stripe, and
  `stripe_customer_generation` (a deleted customer is re-created under a new key).
- dispute, stripe_refund: local records of chargebacks and refunds seen in Stripe.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:50:20.085683
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base

OLD_LIVE = "status IN ('provisional', 'active', 'past_due')"
NEW_LIVE = "status IN ('provisional', 'active', 'past_due', 'action_required', 'paused')"
OLD_STATUSES = "status IN ('provisional', 'active', 'past_due', 'failed', 'expired', 'cancelled')"
NEW_STATUSES = "status IN ('provisional', 'active', 'past_due', 'failed', 'expired', 'cancelled', 'action_required', 'paused')"
OLD_HOLD = "status <> 'provisional' OR provisional_expires_at IS NOT NULL"
NEW_HOLD = "status NOT IN ('provisional', 'action_required') OR provisional_expires_at IS NOT NULL"


revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('dispute',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_dispute_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('charge_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('payment_intent_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('payee_id', sa.Integer(), nullable=True),
    sa.Column('enrollment_id', sa.Integer(), nullable=True),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('evidence_due_by', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], name=op.f('fk_dispute_enrollment_id_enrollment'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['payee_id'], ['payee.id'], name=op.f('fk_dispute_payee_id_payee'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispute')),
    sa.UniqueConstraint('stripe_dispute_id', name=op.f('uq_dispute_stripe_dispute_id'))
    )
    op.create_table('stripe_refund',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_refund_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('charge_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('payment_intent_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('payee_id', sa.Integer(), nullable=True),
    sa.Column('enrollment_id', sa.Integer(), nullable=True),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], name=op.f('fk_stripe_refund_enrollment_id_enrollment'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['payee_id'], ['payee.id'], name=op.f('fk_stripe_refund_payee_id_payee'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_refund')),
    sa.UniqueConstraint('stripe_refund_id', name=op.f('uq_stripe_refund_stripe_refund_id'))
    )
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('action_client_secret', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('action_url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
        batch_op.add_column(sa.Column('stripe_key_generation', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_index('uq_enrollment_live_timeslot', postgresql_where=sa.text(OLD_LIVE), sqlite_where=sa.text(OLD_LIVE))
        batch_op.drop_constraint(op.f('ck_enrollment_status_known'), type_='check')
        batch_op.drop_constraint(op.f('ck_enrollment_hold_expires'), type_='check')
        batch_op.create_check_constraint('status_known', sa.text(NEW_STATUSES))
        batch_op.create_check_constraint('hold_expires', sa.text(NEW_HOLD))
        batch_op.create_index('uq_enrollment_live_timeslot', ['timeslot_id'], unique=True,
                              postgresql_where=sa.text(NEW_LIVE), sqlite_where=sa.text(NEW_LIVE))

    with op.batch_alter_table('payee', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_payment_method_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('stripe_customer_generation', sa.Integer(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('payee', schema=None) as batch_op:
        batch_op.drop_column('stripe_customer_generation')
        batch_op.drop_column('stripe_payment_method_id')

    # The old schema knows neither status: a payment waiting for the parent is a hold again,
    # a paused enrollment an active one.
    op.execute("UPDATE enrollment SET status = 'provisional' WHERE status = 'action_required'")
    op.execute("UPDATE enrollment SET status = 'active' WHERE status = 'paused'")
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_index('uq_enrollment_live_timeslot', postgresql_where=sa.text(NEW_LIVE), sqlite_where=sa.text(NEW_LIVE))
        batch_op.drop_constraint(op.f('ck_enrollment_status_known'), type_='check')
        batch_op.drop_constraint(op.f('ck_enrollment_hold_expires'), type_='check')
        batch_op.create_check_constraint('status_known', sa.text(OLD_STATUSES))
        batch_op.create_check_constraint('hold_expires', sa.text(OLD_HOLD))
        batch_op.create_index('uq_enrollment_live_timeslot', ['timeslot_id'], unique=True,
                              postgresql_where=sa.text(OLD_LIVE), sqlite_where=sa.text(OLD_LIVE))
        batch_op.drop_column('stripe_key_generation')
        batch_op.drop_column('action_url')
        batch_op.drop_column('action_client_secret')

    op.drop_table('stripe_refund')
    op.drop_table('dispute')
