"""Payee invites, and room for any Supabase user id.

- payee_invite: one-time codes (`studioctl payees invite`) that let a parent's sign-in claim
  the payee the studio made; only the code's SHA-256 is kept, with its expiry and use.
- payee.supabase_user_id: VARCHAR(64) → VARCHAR(255), the longest `sub` `/auth/exchange`
  accepts (a sign-in it lets through can always register).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 06:15:31.310200
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('payee_invite',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payee_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('used_by', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('revoked_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['payee_id'], ['payee.id'], name=op.f('fk_payee_invite_payee_id_payee'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payee_invite')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_payee_invite_code_hash'))
    )
    with op.batch_alter_table('payee_invite', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payee_invite_payee_id'), ['payee_id'], unique=False)

    with op.batch_alter_table('payee', schema=None) as batch_op:
        batch_op.alter_column('supabase_user_id',
               existing_type=sa.VARCHAR(length=64),
               type_=sqlmodel.sql.sqltypes.AutoString(length=255),
               existing_nullable=True)


def downgrade() -> None:
    longer = op.get_bind().execute(sa.text("SELECT count(*) FROM payee WHERE length(supabase_user_id) > 64")).scalar()
    if longer:
        raise RuntimeError(f"{longer} payee(s) signed in with a user id longer than 64 characters: the 0002 schema cannot hold it")
    with op.batch_alter_table('payee', schema=None) as batch_op:
        batch_op.alter_column('supabase_user_id',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=255),
               type_=sa.VARCHAR(length=64),
               existing_nullable=True)

    with op.batch_alter_table('payee_invite', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payee_invite_payee_id'))

    op.drop_table('payee_invite')
