"""Where a slot's lessons are — its room and that room's location — read through the light Core
handles (`models.light`), for the admin's fast day view (`models.dashboard.day_schedule`): the
SQLModel table classes of `models.locations` are not imported on that path."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from models import light


def slot_places(session: Session, slot_ids: set[int]) -> dict[int, tuple[str, str]]:
    """(location, room) names of each slot of `slot_ids` that has a room (one query)."""
    if not slot_ids:
        return {}
    t, room, place = light.timeslot, light.room, light.location
    rows = session.execute(
        sa.select(t.c.id, place.c.name, room.c.name)
        .select_from(t)
        .join(room, room.c.id == t.c.room_id)
        .join(place, place.c.id == room.c.location_id)
        .where(t.c.id.in_(sorted(slot_ids)))
    ).all()
    return {slot_id: (location, room_name) for slot_id, location, room_name in rows}


def add_places(session: Session, entries: list[dict]) -> list[dict]:
    """Set `location` and `room` (None without a room) on entries that carry a `timeslot_id`."""
    places = slot_places(session, {entry["timeslot_id"] for entry in entries})
    for entry in entries:
        entry["location"], entry["room"] = places.get(entry["timeslot_id"], (None, None))
    return entries
