"""`/public/*` and `/healthz`: what anyone may read before signing in."""

from __future__ import annotations

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from models.clock import format_minute
from models.db import ping, session_scope
from models.discovery import list_instruments, list_teachers, list_timeslots
from models.locations import list_locations
from webapi import readiness
from webapi.problems import problem
from webapi.schemas import (
    HealthOut,
    InstrumentOut,
    InstrumentPage,
    LocationList,
    LocationOut,
    PageQuery,
    Problem,
    ReadyOut,
    TeacherOut,
    TeacherPage,
    TeacherQuery,
    TimeslotPage,
    TimeslotQuery,
    decode_cursor,
    page,
)

tag = Tag(name="public", description="Discovery: instruments, teachers, open timeslots")
bp = APIBlueprint("public", __name__, url_prefix="/public", abp_tags=[tag], abp_responses={422: Problem, 503: Problem})
health_bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


@bp.get("/instruments", responses={200: InstrumentPage})
def instruments(query: PageQuery):
    """Every instrument taught at the studio."""
    with session_scope(write=False) as session:
        rows = list_instruments(session, after_id=decode_cursor(query.cursor), limit=query.limit)
    items, next_cursor = page(rows, query.limit)
    return InstrumentPage(items=[InstrumentOut(id=row.id, name=row.name) for row in items], next_cursor=next_cursor).model_dump(
        mode="json"
    )


@bp.get("/locations", responses={200: LocationList})
def locations():
    """Every location the studio teaches at, by name, with its address (a handful: no pages)."""
    with session_scope(write=False) as session:
        rows = list_locations(session)
    return LocationList(items=[LocationOut(id=row["id"], name=row["name"], address=row["address"]) for row in rows]).model_dump(
        mode="json"
    )


@bp.get("/teachers", responses={200: TeacherPage})
def teachers(query: TeacherQuery):
    """Active teachers with the instruments they teach (optionally one instrument's)."""
    with session_scope(write=False) as session:
        rows = list_teachers(session, instrument=query.instrument, after_id=decode_cursor(query.cursor), limit=query.limit)
    items, next_cursor = page(rows, query.limit, key=lambda row: row.teacher.id)
    return TeacherPage(
        items=[
            TeacherOut(id=row.teacher.id, name=row.teacher.name, bio=row.teacher.bio, instruments=row.instruments)
            for row in items
        ],
        next_cursor=next_cursor,
    ).model_dump(mode="json")


@bp.get("/timeslots", responses={200: TimeslotPage, 404: Problem})
def timeslots(query: TimeslotQuery):
    """Weekly slots with their teacher, room and location, availability and next lesson start
    (studio offset, DST-right); `location` names one location (404 when there is none)."""
    settings = current_app.config["STUDIO_SETTINGS"]
    with session_scope(write=False) as session:
        rows = list_timeslots(
            session,
            tz=settings.tz,
            teacher_id=query.teacher_id,
            instrument=query.instrument,
            weekday=query.weekday,
            available=query.available,
            after_id=decode_cursor(query.cursor),
            limit=query.limit,
            location=query.location,
        )
    items, next_cursor = page(rows, query.limit)
    # Built as plain JSON-ready dicts: the hot listing skips a pydantic model per item.
    # The shape is TimeslotPage's (the documented response; tests/test_api_public.py
    # validates answers against it).
    return {
        "items": [
            {
                "id": row.id,
                "teacher_id": row.teacher_id,
                "teacher_name": row.teacher_name,
                "instruments": row.instruments,
                "weekday": row.weekday,
                "start": format_minute(row.start_minute),
                "end": format_minute((row.start_minute + 30) % 1440),
                "available": row.available,
                "next_occurrence": row.next_occurrence.isoformat() if row.next_occurrence else None,
                "available_from": row.available_from.isoformat() if row.available_from else None,
                "location": row.location,
                "room": row.room,
            }
            for row in items
        ],
        "next_cursor": next_cursor,
    }


@health_bp.get("/healthz", responses={200: HealthOut, 503: Problem})
def healthz():
    """200 when the database answers, 503 problem+json otherwise."""
    ping()
    return {"status": "ok"}


@health_bp.get("/readyz", responses={200: ReadyOut, 503: Problem})
def readyz():
    """200 when the database is at the migrations' head and Redis answers (when configured);
    503 problem+json `not-ready` naming what is down otherwise. `/healthz` is liveness only."""
    results = readiness.checks(current_app.config["STUDIO_SETTINGS"])
    down = readiness.failing(results)
    if down:
        detail = "; ".join(f"{name}: {result}" for name, result in down.items())
        return problem(503, "not-ready", "Not ready", detail, headers={"Retry-After": "5"}, checks=results)
    return {"status": "ready", "checks": results}
