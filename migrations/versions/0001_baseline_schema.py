"""Baseline schema: every table of the domain model with its constraints.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 21:16:51.008317
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base


revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('entity', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('entity_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_actor'), ['actor'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_created_at'), ['created_at'], unique=False)

    op.create_table('dead_letter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('retried_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letter'))
    )
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letter_kind'), ['kind'], unique=False)

    op.create_table('email_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('template', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('provider_message_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed')", name=op.f('ck_email_log_status_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_log')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_email_log_dedupe_key'))
    )
    with op.batch_alter_table('email_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_log_recipient'), ['recipient'], unique=False)
        batch_op.create_index(batch_op.f('ix_email_log_status'), ['status'], unique=False)

    op.create_table('instrument',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.CheckConstraint('name = lower(name) AND length(name) > 0', name=op.f('ck_instrument_name_lower')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instrument')),
    sa.UniqueConstraint('name', name=op.f('uq_instrument_name'))
    )
    op.create_table('payee',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('supabase_user_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('stripe_customer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('calendar_token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payee')),
    sa.UniqueConstraint('calendar_token', name=op.f('uq_payee_calendar_token')),
    sa.UniqueConstraint('email', name=op.f('uq_payee_email')),
    sa.UniqueConstraint('stripe_customer_id', name=op.f('uq_payee_stripe_customer_id')),
    sa.UniqueConstraint('supabase_user_id', name=op.f('uq_payee_supabase_user_id'))
    )
    op.create_table('plan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('frequency', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('stripe_product_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('stripe_price_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("frequency IN ('weekly', 'monthly', 'semester')", name=op.f('ck_plan_frequency_known')),
    sa.CheckConstraint('amount_cents >= 0', name=op.f('ck_plan_amount_not_negative')),
    sa.CheckConstraint('length(currency) = 3', name=op.f('ck_plan_currency_code')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan'))
    )
    op.create_table('semester',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('makeup_starts_on', sa.Date(), nullable=False),
    sa.Column('makeup_ends_on', sa.Date(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ends_on >= starts_on', name=op.f('ck_semester_dates_ordered')),
    sa.CheckConstraint('makeup_ends_on >= makeup_starts_on', name=op.f('ck_semester_makeup_dates_ordered')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_semester')),
    sa.UniqueConstraint('name', name=op.f('uq_semester_name'))
    )
    op.create_table('stripe_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_event_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('received_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('received', 'processed', 'failed', 'ignored')", name=op.f('ck_stripe_event_status_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_event')),
    sa.UniqueConstraint('stripe_event_id', name=op.f('uq_stripe_event_stripe_event_id'))
    )
    with op.batch_alter_table('stripe_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_event_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_event_type'), ['type'], unique=False)

    op.create_table('teacher',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('bio', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teacher')),
    sa.UniqueConstraint('email', name=op.f('uq_teacher_email'))
    )
    op.create_table('idempotency_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payee_id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=False),
    sa.Column('response_body', sa.JSON(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payee_id'], ['payee.id'], name=op.f('fk_idempotency_record_payee_id_payee'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_record')),
    sa.UniqueConstraint('payee_id', 'key', name=op.f('uq_idempotency_record_payee_id_key'))
    )
    op.create_table('semester_closure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('semester_id', sa.Integer(), nullable=False),
    sa.Column('closed_on', sa.Date(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
    sa.ForeignKeyConstraint(['semester_id'], ['semester.id'], name=op.f('fk_semester_closure_semester_id_semester'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_semester_closure')),
    sa.UniqueConstraint('semester_id', 'closed_on', name=op.f('uq_semester_closure_semester_id_closed_on'))
    )
    with op.batch_alter_table('semester_closure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_semester_closure_semester_id'), ['semester_id'], unique=False)

    op.create_table('student',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payee_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('archived_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payee_id'], ['payee.id'], name=op.f('fk_student_payee_id_payee'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_student'))
    )
    with op.batch_alter_table('student', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_student_payee_id'), ['payee_id'], unique=False)

    op.create_table('teacher_instrument',
    sa.Column('teacher_id', sa.Integer(), nullable=False),
    sa.Column('instrument_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['instrument_id'], ['instrument.id'], name=op.f('fk_teacher_instrument_instrument_id_instrument'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['teacher_id'], ['teacher.id'], name=op.f('fk_teacher_instrument_teacher_id_teacher'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('teacher_id', 'instrument_id', name=op.f('pk_teacher_instrument'))
    )
    op.create_table('timeslot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('teacher_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('start_minute', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('start_minute BETWEEN 0 AND 1410 AND start_minute % 30 = 0', name=op.f('ck_timeslot_start_half_hour')),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_timeslot_weekday_range')),
    sa.ForeignKeyConstraint(['teacher_id'], ['teacher.id'], name=op.f('fk_timeslot_teacher_id_teacher'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timeslot')),
    sa.UniqueConstraint('teacher_id', 'weekday', 'start_minute', name=op.f('uq_timeslot_teacher_id_weekday_start_minute'))
    )
    with op.batch_alter_table('timeslot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timeslot_teacher_id'), ['teacher_id'], unique=False)

    op.create_table('enrollment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('timeslot_id', sa.Integer(), nullable=False),
    sa.Column('instrument_id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('semester_id', sa.Integer(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('offline', sa.Boolean(), nullable=False),
    sa.Column('provisional_expires_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('stripe_subscription_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('stripe_invoice_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('stripe_payment_intent_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('pipeline_state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('failure_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('cancel_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('past_due_since', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status <> 'provisional' OR provisional_expires_at IS NOT NULL", name=op.f('ck_enrollment_hold_expires')),
    sa.CheckConstraint("status IN ('provisional', 'active', 'past_due', 'failed', 'expired', 'cancelled')", name=op.f('ck_enrollment_status_known')),
    sa.CheckConstraint('end_date IS NULL OR end_date >= start_date', name=op.f('ck_enrollment_dates_ordered')),
    sa.ForeignKeyConstraint(['instrument_id'], ['instrument.id'], name=op.f('fk_enrollment_instrument_id_instrument'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], name=op.f('fk_enrollment_plan_id_plan'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['semester_id'], ['semester.id'], name=op.f('fk_enrollment_semester_id_semester'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['student_id'], ['student.id'], name=op.f('fk_enrollment_student_id_student'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['timeslot_id'], ['timeslot.id'], name=op.f('fk_enrollment_timeslot_id_timeslot'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment'))
    )
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollment_provisional_expires_at'), ['provisional_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollment_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollment_stripe_subscription_id'), ['stripe_subscription_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollment_student_id'), ['student_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollment_timeslot_id'), ['timeslot_id'], unique=False)
        batch_op.create_index('uq_enrollment_live_timeslot', ['timeslot_id'], unique=True, postgresql_where=sa.text("status IN ('provisional', 'active', 'past_due')"), sqlite_where=sa.text("status IN ('provisional', 'active', 'past_due')"))

    op.create_table('attendance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('lesson_date', sa.Date(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('marked_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('present', 'excused', 'no_show', 'teacher_cancelled')", name=op.f('ck_attendance_status_known')),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], name=op.f('fk_attendance_enrollment_id_enrollment'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attendance')),
    sa.UniqueConstraint('enrollment_id', 'lesson_date', name=op.f('uq_attendance_enrollment_id_lesson_date'))
    )
    with op.batch_alter_table('attendance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attendance_enrollment_id'), ['enrollment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attendance_lesson_date'), ['lesson_date'], unique=False)

    op.create_table('makeup',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('origin_attendance_id', sa.Integer(), nullable=True),
    sa.Column('instrument_id', sa.Integer(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('timeslot_id', sa.Integer(), nullable=True),
    sa.Column('lesson_date', sa.Date(), nullable=True),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('available', 'booked', 'used', 'expired')", name=op.f('ck_makeup_status_known')),
    sa.CheckConstraint("status NOT IN ('booked', 'used') OR (timeslot_id IS NOT NULL AND lesson_date IS NOT NULL)", name=op.f('ck_makeup_booked_has_slot')),
    sa.ForeignKeyConstraint(['instrument_id'], ['instrument.id'], name=op.f('fk_makeup_instrument_id_instrument'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['origin_attendance_id'], ['attendance.id'], name=op.f('fk_makeup_origin_attendance_id_attendance'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['student_id'], ['student.id'], name=op.f('fk_makeup_student_id_student'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['timeslot_id'], ['timeslot.id'], name=op.f('fk_makeup_timeslot_id_timeslot'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_makeup')),
    sa.UniqueConstraint('origin_attendance_id', name=op.f('uq_makeup_origin_attendance_id'))
    )
    with op.batch_alter_table('makeup', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_makeup_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_makeup_student_id'), ['student_id'], unique=False)
        batch_op.create_index('uq_makeup_taken_slot_date', ['timeslot_id', 'lesson_date'], unique=True, postgresql_where=sa.text("status IN ('booked', 'used')"), sqlite_where=sa.text("status IN ('booked', 'used')"))




def downgrade() -> None:

    with op.batch_alter_table('makeup', schema=None) as batch_op:
        batch_op.drop_index('uq_makeup_taken_slot_date', postgresql_where=sa.text("status IN ('booked', 'used')"), sqlite_where=sa.text("status IN ('booked', 'used')"))
        batch_op.drop_index(batch_op.f('ix_makeup_student_id'))
        batch_op.drop_index(batch_op.f('ix_makeup_status'))

    op.drop_table('makeup')
    with op.batch_alter_table('attendance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attendance_lesson_date'))
        batch_op.drop_index(batch_op.f('ix_attendance_enrollment_id'))

    op.drop_table('attendance')
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_index('uq_enrollment_live_timeslot', postgresql_where=sa.text("status IN ('provisional', 'active', 'past_due')"), sqlite_where=sa.text("status IN ('provisional', 'active', 'past_due')"))
        batch_op.drop_index(batch_op.f('ix_enrollment_timeslot_id'))
        batch_op.drop_index(batch_op.f('ix_enrollment_student_id'))
        batch_op.drop_index(batch_op.f('ix_enrollment_stripe_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_enrollment_status'))
        batch_op.drop_index(batch_op.f('ix_enrollment_provisional_expires_at'))

    op.drop_table('enrollment')
    with op.batch_alter_table('timeslot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_timeslot_teacher_id'))

    op.drop_table('timeslot')
    op.drop_table('teacher_instrument')
    with op.batch_alter_table('student', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_student_payee_id'))

    op.drop_table('student')
    with op.batch_alter_table('semester_closure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_semester_closure_semester_id'))

    op.drop_table('semester_closure')
    op.drop_table('idempotency_record')
    op.drop_table('teacher')
    with op.batch_alter_table('stripe_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_event_type'))
        batch_op.drop_index(batch_op.f('ix_stripe_event_received_at'))

    op.drop_table('stripe_event')
    op.drop_table('semester')
    op.drop_table('plan')
    op.drop_table('payee')
    op.drop_table('instrument')
    with op.batch_alter_table('email_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_log_status'))
        batch_op.drop_index(batch_op.f('ix_email_log_recipient'))

    op.drop_table('email_log')
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letter_kind'))

    op.drop_table('dead_letter')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_created_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_actor'))
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')

