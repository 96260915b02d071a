"""Locations and rooms (issue 15, item 5), on both engines: the database keeps a room from holding
two slots at once whatever door the rows come through; `studioctl locations | rooms`, and
`timeslots add | publish --room`; where a slot is in the discovery listing (`?location=`), the
family's lessons, the ICS feed and the admin's day."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import icalendar
import pytest
import sqlalchemy as sa
from sqlmodel import select

from models.audit import AuditLog
from models.clock import studio_today
from models.enrollment import Enrollment
from models.locations import Location, Room
from models.people import Payee
from models.scheduling import Timeslot
from tests import factories
from tests.support.api import assert_problem
from tests.support.cli import audit_actions, invoke, ok, ok_json, refused, row_counts


def _room(session, location: str, room: str, *, address: str | None = None) -> Room:
    place = session.exec(select(Location).where(Location.name == location)).first()
    if place is None:
        place = Location(name=location, address=address)
        session.add(place)
        session.flush()
    row = Room(location_id=place.id, name=room)
    session.add(row)
    session.flush()
    return row


def _slot(session, *, teacher, room: Room | None, weekday: int = 1, minute: int = 16 * 60) -> Timeslot:
    row = Timeslot(teacher_id=teacher.id, weekday=weekday, start_minute=minute, room_id=room.id if room else None)
    session.add(row)
    session.flush()
    return row


def _enrollment(session, slot: Timeslot, *, payee: Payee | None = None, student_name: str = "Ada", start: date) -> Enrollment:
    student = factories.student(session, payee_row=payee, name=student_name)
    row = Enrollment(
        student_id=student.id,
        timeslot_id=slot.id,
        instrument_id=factories.instrument(session).id,
        status="active",
        offline=True,
        start_date=start,
    )
    session.add(row)
    session.flush()
    return row


# The database's rule ----------------------------------------------------------------------


def test_the_database_refuses_a_second_slot_of_a_room_at_the_same_weekday_and_time(session, db):
    """Rows written past our checks — through the ORM and through Core — still cannot put two
    slots in one room at once; other times, other days, other rooms and slots without a room can."""
    room, other_room = _room(session, "Downtown", "Room 1"), _room(session, "Downtown", "Room 2")
    ada, bob = factories.teacher(session), factories.teacher(session)
    first = _slot(session, teacher=ada, room=room)
    session.commit()

    with pytest.raises(sa.exc.IntegrityError, match="uq_timeslot_room_weekday_start|UNIQUE constraint failed"):
        with session.begin_nested():
            _slot(session, teacher=bob, room=room)
    with pytest.raises(sa.exc.IntegrityError, match="uq_timeslot_room_weekday_start|UNIQUE constraint failed"):
        with db.begin_nested():
            db.execute(
                sa.insert(Timeslot.__table__).values(
                    teacher_id=bob.id, weekday=1, start_minute=16 * 60, room_id=room.id, active=True, created_at=datetime.now(UTC)
                )
            )
    # Moving another slot into the taken place is refused too.
    later = _slot(session, teacher=bob, room=room, minute=16 * 60 + 30)
    session.commit()
    with pytest.raises(sa.exc.IntegrityError):
        with session.begin_nested():
            later.start_minute = 16 * 60
            session.flush()
    session.rollback()

    _slot(session, teacher=bob, room=room, weekday=2)  # another weekday
    _slot(session, teacher=bob, room=other_room)  # another room, same time
    _slot(session, teacher=factories.teacher(session), room=None)  # no room: not held to it
    _slot(session, teacher=factories.teacher(session), room=None)
    session.commit()
    assert session.exec(select(sa.func.count()).select_from(Timeslot).where(Timeslot.room_id == room.id)).one() == 3
    assert first.id is not None


def test_a_room_with_slots_and_a_location_with_rooms_cannot_be_deleted(session):
    room = _room(session, "Downtown", "Room 1")
    _slot(session, teacher=factories.teacher(session), room=room)
    session.commit()
    with pytest.raises(sa.exc.IntegrityError):
        with session.begin_nested():
            session.execute(sa.delete(Room.__table__).where(Room.__table__.c.id == room.id))
    with pytest.raises(sa.exc.IntegrityError):
        with session.begin_nested():
            session.execute(sa.delete(Location.__table__))


def test_the_database_keeps_names_unique(session):
    _room(session, "Downtown", "Room 1")
    session.commit()
    with pytest.raises(sa.exc.IntegrityError):
        with session.begin_nested():
            session.add(Location(name="Downtown"))
            session.flush()
    with pytest.raises(sa.exc.IntegrityError):
        with session.begin_nested():
            _room(session, "Downtown", "Room 1")
    _room(session, "Uptown", "Room 1")  # the same room name in another location
    session.commit()


# The CLI ----------------------------------------------------------------------------------


def test_locations_and_rooms_are_added_listed_and_audited(session):
    added = ok_json("locations", "add", "--name", "  Downtown  Studio ", "--address", "12 Main St")
    assert added == {"id": added["id"], "name": "Downtown Studio", "address": "12 Main St", "rooms": 0}
    ok("locations", "add", "--name", "Uptown")
    room = ok_json("rooms", "add", "--location", "downtown studio", "--name", "Room 2")
    assert room == {
        "id": room["id"],
        "name": "Room 2",
        "location_id": added["id"],
        "location": "Downtown Studio",
        "label": "Downtown Studio/Room 2",
    }
    ok("rooms", "add", "--location", str(added["id"]), "--name", "Hall")
    ok("rooms", "add", "--location", "Uptown", "--name", "Room 2")  # unique per location only
    assert "added room Uptown/Attic" in ok("rooms", "add", "--location", "Uptown", "--name", "Attic").stdout

    assert [(row["name"], row["address"], row["rooms"]) for row in ok_json("locations", "list")] == [
        ("Downtown Studio", "12 Main St", 2),
        ("Uptown", None, 2),
    ]
    assert [row["label"] for row in ok_json("rooms", "list")] == [
        "Downtown Studio/Hall",
        "Downtown Studio/Room 2",
        "Uptown/Attic",
        "Uptown/Room 2",
    ]
    assert [row["label"] for row in ok_json("rooms", "list", "--location", "uptown")] == ["Uptown/Attic", "Uptown/Room 2"]
    table = ok("rooms", "list").stdout
    assert "Downtown Studio/Hall" in table and "timeslots" in table
    assert "12 Main St" in ok("locations", "list").stdout
    assert [action for _, action in audit_actions(session)] == ["location.add"] * 2 + ["room.add"] * 4
    audit = session.exec(select(AuditLog).where(AuditLog.action == "room.add").order_by(AuditLog.id)).first()
    assert audit.actor == "admin" and json.loads(json.dumps(audit.after))["name"] == "Room 2"


def test_location_and_room_refusals_are_one_line_and_change_nothing(session):
    ok("locations", "add", "--name", "Downtown")
    ok("rooms", "add", "--location", "Downtown", "--name", "Room 2")
    teacher = factories.teacher(session)
    session.commit()
    before = row_counts(session)
    refused("locations", "add", "--name", "DOWNTOWN", message="there is a location 'Downtown' already")
    refused("locations", "add", "--name", "North/South", message="cannot hold a '/'")
    refused("locations", "add", "--name", "42", message="cannot be only digits")
    refused("locations", "add", "--name", "   ", message="needs a name")
    refused("rooms", "add", "--location", "Downtown", "--name", "room 2", message="Downtown has a room 'Room 2' already")
    refused("rooms", "add", "--location", "Nowhere", "--name", "Room 1", message="no location 'Nowhere'")
    refused("rooms", "add", "--location", "999999", "--name", "Room 1", message="no location '999999'")
    refused("rooms", "list", "--location", "Nowhere", message="no location 'Nowhere'")
    slot = ["timeslots", "add", "--teacher", teacher.email, "--weekday", "tue", "--at", "16:00", "--room"]
    refused(*slot, "Downtown/Room 9", message="no room 'Downtown/Room 9'")
    refused(*slot, "Nowhere/Room 2", message="no room 'Nowhere/Room 2'")
    refused(*slot, "424242", message="no room '424242'")
    refused(*slot, "Room 2", message="name a room as Location/Room or by its id")
    assert row_counts(session) == before


def test_timeslots_add_and_publish_in_a_room(session):
    ok("locations", "add", "--name", "Downtown")
    room = ok_json("rooms", "add", "--location", "Downtown", "--name", "Room 2")
    ada, bob = factories.teacher(session, name="Ada"), factories.teacher(session, name="Bob")
    session.commit()
    added = ok_json("timeslots", "add", "--teacher", ada.email, "--weekday", "tue", "--at", "16:00", "--room", "downtown/ROOM 2")
    assert (added["room_id"], added["room"]) == (room["id"], "Downtown/Room 2")
    assert (
        "in Downtown/Room 2"
        in ok("timeslots", "add", "--teacher", ada.email, "--weekday", "wed", "--at", "16:00", "--room", str(room["id"])).stdout
    )
    audit = session.exec(select(AuditLog).where(AuditLog.action == "timeslot.add").order_by(AuditLog.id)).first()
    assert audit.after["room_id"] == room["id"]

    before = row_counts(session)
    refused(
        "timeslots",
        "add",
        "--teacher",
        bob.email,
        "--weekday",
        "tue",
        "--at",
        "16:00",
        "--room",
        "Downtown/Room 2",
        message=f"Downtown/Room 2 is taken Tue 16:00 by slot {added['id']} (Ada)",
    )
    # Publishing over the taken time makes nothing, not even the free times before it.
    refused(
        "timeslots",
        "publish",
        "--teacher",
        bob.email,
        "--weekday",
        "tue",
        "--from",
        "15:00",
        "--to",
        "17:00",
        "--room",
        "Downtown/Room 2",
        message="Downtown/Room 2 is taken Tue 16:00",
    )
    assert row_counts(session) == before
    published = ok_json(
        "timeslots",
        "publish",
        "--teacher",
        bob.email,
        "--weekday",
        "tue",
        "--from",
        "14:00",
        "--to",
        "16:00",
        "--room",
        "Downtown/Room 2",
    )
    assert [(slot["start"], slot["room"]) for slot in published["created"]] == [
        (start, "Downtown/Room 2") for start in ("14:00", "14:30", "15:00", "15:30")
    ]
    # Without a room, Bob may teach at 16:00 (the room rule holds slots that name a room).
    assert ok_json("timeslots", "add", "--teacher", bob.email, "--weekday", "tue", "--at", "16:00")["room"] is None
    listed = {(row["teacher"], row["start"]): row["room"] for row in ok_json("timeslots", "list", "--weekday", "tue")}
    assert listed[("Ada", "16:00")] == "Downtown/Room 2" and listed[("Bob", "16:00")] is None
    assert "Downtown/Room 2" in ok("timeslots", "list").stdout
    assert ok_json("rooms", "list")[0]["timeslots"] == 6


def test_room_help_says_how_to_name_a_room():
    for command in (("timeslots", "add"), ("timeslots", "publish")):
        text = " ".join(invoke(*command, "--help").output.replace("│", " ").split())
        assert "Location/Room" in text and "room id" in text


# Where, in the answers ------------------------------------------------------------------------


@pytest.fixture
def two_places(session):
    """Tuesday 16:00 slots: Ada's in Downtown/Room 1 (12 Main St), Bob's in Uptown/Hall, Cy's
    without a room."""
    downtown, uptown = _room(session, "Downtown", "Room 1", address="12 Main St"), _room(session, "Uptown", "Hall")
    slots = {
        "downtown": _slot(session, teacher=factories.teacher(session, name="Ada"), room=downtown),
        "uptown": _slot(session, teacher=factories.teacher(session, name="Bob"), room=uptown),
        "nowhere": _slot(session, teacher=factories.teacher(session, name="Cy"), room=None),
    }
    session.commit()
    return {name: slot.id for name, slot in slots.items()} | {
        "downtown_id": downtown.location_id,
        "uptown_id": uptown.location_id,
    }


def test_public_timeslots_say_where_and_filter_by_location(client, two_places):
    everything = {item["id"]: (item["location"], item["room"]) for item in client.get("/public/timeslots").get_json()["items"]}
    assert everything == {
        two_places["downtown"]: ("Downtown", "Room 1"),
        two_places["uptown"]: ("Uptown", "Hall"),
        two_places["nowhere"]: (None, None),
    }
    for ref in ("Downtown", "downtown", str(two_places["downtown_id"])):
        items = client.get(f"/public/timeslots?available=true&location={ref}").get_json()["items"]
        assert [item["id"] for item in items] == [two_places["downtown"]], ref
    assert [item["id"] for item in client.get("/public/timeslots?location=Uptown&weekday=1").get_json()["items"]] == [
        two_places["uptown"]
    ]
    assert client.get("/public/timeslots?location=Uptown&weekday=2").get_json()["items"] == []  # known, nothing then
    locations = client.get("/public/locations").get_json()["items"]
    assert locations == [
        {"id": two_places["downtown_id"], "name": "Downtown", "address": "12 Main St"},
        {"id": two_places["uptown_id"], "name": "Uptown", "address": None},
    ]


def test_an_unknown_location_is_404(client, two_places):
    for ref in ("Nowhere", "999999"):
        body = assert_problem(client.get(f"/public/timeslots?location={ref}"), 404, "unknown-location")
        assert body["field"] == "location" and ref in body["detail"]
    assert_problem(client.get("/public/timeslots?location=" + "x" * 81), 422, "validation-error")


def test_the_location_filter_keeps_the_listing_at_three_queries(client, session, db, two_places):
    room = session.get(Timeslot, two_places["downtown"]).room_id
    for weekday in range(5):
        _slot(session, teacher=factories.teacher(session), room=session.get(Room, room), weekday=weekday, minute=9 * 60)
    session.commit()
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN")):
            statements.append(statement)

    sa.event.listen(db, "before_cursor_execute", count)
    try:
        counts = []
        for limit in (1, 5):
            statements.clear()
            response = client.get(f"/public/timeslots?available=true&location=Downtown&limit={limit}")
            assert len(response.get_json()["items"]) == limit
            counts.append(len(statements))
    finally:
        sa.event.remove(db, "before_cursor_execute", count)
    assert counts[0] == counts[1] == 3, counts


def test_the_familys_lessons_and_calendar_say_where(client, session, family_a, two_places):
    today = studio_today()
    payee = session.get(Payee, family_a.payee_id)
    _enrollment(session, session.get(Timeslot, two_places["downtown"]), payee=payee, start=today)
    _enrollment(session, session.get(Timeslot, two_places["nowhere"]), payee=payee, student_name="Ben", start=today)
    session.commit()
    lessons = client.get("/parent/lessons", headers=family_a.headers).get_json()["items"]
    where = {(lesson["student"], lesson["location"], lesson["room"]) for lesson in lessons}
    assert where == {("Ada", "Downtown", "Room 1"), ("Ben", None, None)}

    feed = client.get("/parent/calendar.ics", headers=family_a.headers)
    assert feed.status_code == 200
    events = icalendar.Calendar.from_ical(feed.data).walk("VEVENT")
    locations = {str(event["SUMMARY"]).split(":")[0]: event.get("LOCATION") for event in events}
    assert str(locations["Ada"]) == "Room 1, Downtown, 12 Main St"
    assert locations["Ben"] is None  # no room: no LOCATION line


def test_the_dashboard_groups_the_day_by_location(session, two_places):
    day = date(2026, 11, 24)  # a Tuesday
    for name, student in (("downtown", "Ada"), ("uptown", "Bea"), ("nowhere", "Cid")):
        _enrollment(session, session.get(Timeslot, two_places[name]), student_name=student, start=day - timedelta(weeks=2))
    session.commit()
    schedule = ok_json("dashboard", "today", "--date", day.isoformat())
    assert {(entry["student"], entry["location"], entry["room"]) for entry in schedule["lessons"]} == {
        ("Ada", "Downtown", "Room 1"),
        ("Bea", "Uptown", "Hall"),
        ("Cid", None, None),
    }
    text = ok("dashboard", "today", "--date", day.isoformat()).stdout
    titles = [line.strip() for line in text.splitlines() if "Tuesday 2026-11-24" in line]
    assert titles == ["Downtown — Tuesday 2026-11-24", "Uptown — Tuesday 2026-11-24", "no room set — Tuesday 2026-11-24"]
    downtown, uptown = text.index("Downtown —"), text.index("Uptown —")
    assert downtown < text.index("Ada") < uptown < text.index("Bea") < text.index("no room set") < text.index("Cid")


def test_the_dashboard_keeps_one_table_for_one_location(session, two_places):
    day = date(2026, 11, 24)
    _enrollment(session, session.get(Timeslot, two_places["downtown"]), start=day - timedelta(weeks=1))
    session.commit()
    text = ok("dashboard", "today", "--date", day.isoformat()).stdout
    assert [line.strip() for line in text.splitlines() if "Tuesday 2026-11-24" in line] == ["Downtown — Tuesday 2026-11-24"]
    assert "Room 1" in text


def test_an_existing_slot_is_put_in_a_room_and_taken_out(session):
    ok("locations", "add", "--name", "Downtown")
    room = ok_json("rooms", "add", "--location", "Downtown", "--name", "Room 2")
    ada, bob = factories.teacher(session, name="Ada"), factories.teacher(session, name="Bob")
    taken = _slot(session, teacher=ada, room=session.get(Room, room["id"]))
    slot = _slot(session, teacher=bob, room=None)
    session.commit()
    before = row_counts(session)
    refused("timeslots", "room", slot.id, "--room", "Downtown/Room 2", message=f"is taken Tue 16:00 by slot {taken.id} (Ada)")
    refused("timeslots", "room", slot.id, message="give --room Location/Room (or its id), or --no-room")
    refused("timeslots", "room", 999999, "--no-room", message="no timeslot 999999")
    assert row_counts(session) == before
    assert ok_json("timeslots", "room", taken.id, "--no-room")["room"] is None
    assert ok_json("timeslots", "room", slot.id, "--room", str(room["id"]))["room"] == "Downtown/Room 2"
    assert (
        "is in Downtown/Room 2" in ok("timeslots", "room", slot.id, "--room", "Downtown/Room 2").stdout
    )  # unchanged: no clash with itself
    changes = session.exec(select(AuditLog).where(AuditLog.action == "timeslot.room").order_by(AuditLog.id)).all()
    assert [(row.before["room_id"], row.after["room_id"]) for row in changes] == [
        (room["id"], None),
        (None, room["id"]),
        (room["id"], room["id"]),
    ]
