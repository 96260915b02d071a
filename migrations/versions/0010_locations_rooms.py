"""Locations and rooms (issue 15, item 5).

- location: a place the studio teaches at; the name is unique, the address optional.
- room: a room of a location; its name is unique within the location.
- timeslot.room_id: the room a slot's lessons are in (empty = not said), RESTRICT.
- uq_timeslot_room_weekday_start: a partial unique index on (room_id, weekday, start_minute)
  WHERE room_id IS NOT NULL — the database refuses two slots of one room at the same weekday
  and time. That is the whole rule, overlaps included: every slot is 30 minutes long and starts
  on the half hour (timeslot's check `ck_timeslot_start_half_hour`), so two slots of a room
  overlap only when they start together. Slots without a room are not held to it.

On SQLite, batch mode rebuilds timeslot to add the reference (create, copy, drop, rename, with
foreign keys off: migrations/env.py). A plain `ALTER TABLE ... ADD COLUMN ... REFERENCES` would
not rebuild it, but SQLite keeps such a reference unnamed and without its ON DELETE as far as
reflection sees, so `alembic check` would find drift. The rebuild is safe here: timeslot has no
triggers and no partial index of its own (its unique key, its check constraints and
ix_timeslot_teacher_id are reflected and made again; the enrollment triggers of 0005/0007 read
enrollment only), and the rows referencing it keep their ids (tests/test_migrations.py upgrades
a populated database). The room index is made after the rebuild, on the final table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:10:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import models.base


revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ROOM_INDEX = 'uq_timeslot_room_weekday_start'
HAS_ROOM = sa.text('room_id IS NOT NULL')


def upgrade() -> None:
    op.create_table('location',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_location')),
    sa.UniqueConstraint('name', name=op.f('uq_location_name'))
    )
    op.create_table('room',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['location_id'], ['location.id'], name=op.f('fk_room_location_id_location'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_room')),
    sa.UniqueConstraint('location_id', 'name', name=op.f('uq_room_location_id_name'))
    )
    with op.batch_alter_table('timeslot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('room_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_timeslot_room_id_room'), 'room', ['room_id'], ['id'], ondelete='RESTRICT')
    op.create_index(ROOM_INDEX, 'timeslot', ['room_id', 'weekday', 'start_minute'], unique=True,
                    postgresql_where=HAS_ROOM, sqlite_where=HAS_ROOM)


def downgrade() -> None:
    op.drop_index(ROOM_INDEX, table_name='timeslot', postgresql_where=HAS_ROOM, sqlite_where=HAS_ROOM)
    with op.batch_alter_table('timeslot', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_timeslot_room_id_room'), type_='foreignkey')
        batch_op.drop_column('room_id')
    op.drop_table('room')
    op.drop_table('location')
