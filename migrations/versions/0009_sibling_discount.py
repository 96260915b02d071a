"""Sibling discount (issue 15, item 4).

- enrollment.discount_percent: the sibling discount (percent off) Stripe applies to the
  enrollment's billing: the coupon on its subscription, or what its semester charge took off.
  0 = full price.
- enrollment.discount_changes: how many times that discount changed; part of the idempotency
  key of each change's Stripe write (a key reused within Stripe's 24 hours would be replayed).

Plain `ADD COLUMN`s (no table rebuild on SQLite, so migration 0005's slot-dates triggers stay);
the percent's range (0-99) is the setting's and the code's.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 17:40:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('enrollment', sa.Column('discount_percent', sa.Integer(), server_default='0', nullable=False))
    op.add_column('enrollment', sa.Column('discount_changes', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    # SQLite drops a column in place (3.35+) when nothing refers to it: the triggers survive.
    op.drop_column('enrollment', 'discount_changes')
    op.drop_column('enrollment', 'discount_percent')
