"""Operations health: the consumers' heartbeats and the periodic jobs' last runs.

- worker_heartbeat: one row per consumer process (host:pid), moved every minute by the
  heartbeat task; `studioctl doctor` says when a consumer was last seen.
- job_run: one row per periodic job, its last run's start, end and error (None: succeeded).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:35:01.562823
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('job_run',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('last_started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_finished_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_succeeded_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_run'))
    )
    op.create_table('worker_heartbeat',
    sa.Column('consumer', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', name=op.f('pk_worker_heartbeat'))
    )


def downgrade() -> None:
    op.drop_table('worker_heartbeat')
    op.drop_table('job_run')
