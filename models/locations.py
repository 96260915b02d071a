"""Where lessons happen: the studio's locations (a name, an optional address) and their rooms.

A location's name is unique and a room's name is unique within its location (the database's
rules; the checks here say so in words first, ignoring case, so `Main` and `main` are one
name). A timeslot may name a room (`models.scheduling.Timeslot.room_id`); the database then
refuses a second slot of that room at the same weekday and time (migration 0010).

An admin names a room as `Location/Room` (`Downtown/Room 2`) or by its id: a location's name
may not hold a `/`, nor be only digits (digits are an id).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from models.audit import record_audit, snapshot
from models.base import MAX_ID, utc_column, utcnow
from models.errors import Conflict, Invalid, NotFound


class Location(SQLModel, table=True):
    """A place the studio teaches at."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, sa_column_kwargs={"unique": True})
    address: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


class Room(SQLModel, table=True):
    """A room of a location; a timeslot in it holds it for that weekday and time."""

    __table_args__ = (sa.UniqueConstraint("location_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    location_id: int = Field(foreign_key="location.id", ondelete="RESTRICT")
    name: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow, sa_column=utc_column(nullable=False))


@dataclass(frozen=True)
class Place:
    """Where a slot's lessons are: its room and that room's location (plain values)."""

    room_id: int
    room: str
    location_id: int
    location: str
    address: str | None = None

    @property
    def label(self) -> str:
        """`Downtown/Room 2`: how an admin names the room (`--room`)."""
        return f"{self.location}/{self.room}"


def _id(text: str) -> int | None:
    """The id `text` names when it is only ASCII digits ("²".isdigit() is true too)."""
    if text.isascii() and text.isdigit():
        row_id = int(text)
        return row_id if 0 < row_id <= MAX_ID else 0
    return None


def _unprintable(text: str) -> bool:
    """A control character (NUL, which PostgreSQL refuses and SQLite stores) or an invisible
    format one (a zero-width space: a name that looks empty or like another)."""
    return any(unicodedata.category(char) in ("Cc", "Cf") for char in text)


def _clean_name(value: str, what: str, *, max_length: int = 80) -> str:
    name = " ".join(value.split())
    if _unprintable(name):
        raise Invalid(f"a {what} name cannot hold control or invisible characters: {name!r}", field="name")
    if not name:
        raise Invalid(f"a {what} needs a name", field="name")
    if len(name) > max_length:
        raise Invalid(f"a {what} name is at most {max_length} characters", field="name")
    return name


def get_location(session: Session, ref: str | int) -> Location:
    """A location by id or name (any case), or NotFound."""
    text = str(ref).strip()
    row_id = _id(text)
    if row_id is not None:
        found = session.get(Location, row_id) if row_id else None
    else:
        found = session.exec(select(Location).where(sa.func.lower(Location.name) == " ".join(text.split()).lower())).first()
    if found is None:
        raise NotFound(f"no location {text!r} (studioctl locations list)", field="location")
    return found


def add_location(session: Session, *, name: str, address: str | None = None, actor: str) -> Location:
    """A new location; Conflict when the name is taken (any case), Invalid when it could not be typed
    back as a `--room` (a `/` in it, or only digits)."""
    name = _clean_name(name, "location")
    if "/" in name:
        raise Invalid(f"a location name cannot hold a '/' (rooms are named Location/Room): {name!r}", field="name")
    if _id(name) is not None:
        raise Invalid(f"a location name cannot be only digits (digits are an id): {name!r}", field="name")
    address = " ".join(address.split()) if address else None
    if address and _unprintable(address):
        raise Invalid(f"an address cannot hold control or invisible characters: {address!r}", field="address")
    if address and len(address) > 300:
        raise Invalid("an address is at most 300 characters", field="address")
    taken = session.exec(select(Location).where(sa.func.lower(Location.name) == name.lower())).first()
    if taken is not None:
        raise Conflict(f"there is a location {taken.name!r} already (id {taken.id})", field="name")
    location = Location(name=name, address=address or None)
    session.add(location)
    session.flush()
    record_audit(session, actor=actor, action="location.add", entity=location, after=snapshot(location))
    return location


def add_room(session: Session, *, location: Location, name: str, actor: str) -> Room:
    """A new room of `location`; Conflict when the location has a room of that name (any case)."""
    name = _clean_name(name, "room")
    taken = session.exec(select(Room).where(Room.location_id == location.id, sa.func.lower(Room.name) == name.lower())).first()
    if taken is not None:
        raise Conflict(f"{location.name} has a room {taken.name!r} already (id {taken.id})", field="name")
    room = Room(location_id=location.id, name=name)
    session.add(room)
    session.flush()
    record_audit(session, actor=actor, action="room.add", entity=room, after=snapshot(room))
    return room


def get_room(session: Session, ref: str | int) -> Room:
    """A room by id or as `Location/Room` (names in any case), or NotFound."""
    text = str(ref).strip()
    row_id = _id(text)
    if row_id is not None:
        found = session.get(Room, row_id) if row_id else None
    elif "/" in text:
        location_name, room_name = (" ".join(part.split()) for part in text.split("/", 1))
        found = session.exec(
            select(Room)
            .join(Location, col(Location.id) == Room.location_id)
            .where(sa.func.lower(Location.name) == location_name.lower(), sa.func.lower(Room.name) == room_name.lower())
        ).first()
    else:
        raise Invalid(f"name a room as Location/Room or by its id, not {text!r} (studioctl rooms list)", field="room")
    if found is None:
        raise NotFound(f"no room {text!r} (studioctl rooms list)", field="room")
    return found


def place_of(session: Session, room_id: int | None) -> Place | None:
    """The room and location of `room_id` as plain values (None without a room). Through the
    session's identity map: a listing of many slots reads each room and location once."""
    room = session.get(Room, room_id) if room_id is not None else None
    if room is None:
        return None
    location = session.get(Location, room.location_id)
    assert location is not None  # a room's location is a RESTRICT reference
    return Place(room.id, room.name, location.id, location.name, location.address)


def list_locations(session: Session) -> list[dict]:
    """Every location by name, with its address and how many rooms it has."""
    rows = session.execute(
        sa.select(col(Location.id), col(Location.name), col(Location.address), sa.func.count(col(Room.id)))
        .outerjoin(Room, col(Room.location_id) == Location.id)
        .group_by(col(Location.id), col(Location.name), col(Location.address))
        .order_by(col(Location.name))
    ).all()
    return [{"id": row_id, "name": name, "address": address, "rooms": count} for row_id, name, address, count in rows]


def room_view(session: Session, room: Room) -> dict:
    """A room with its location and label."""
    place = place_of(session, room.id)
    assert place is not None
    return {"id": room.id, "name": room.name, "location_id": place.location_id, "location": place.location, "label": place.label}
