"""Render a family's calendar entries as iCalendar (RFC 5545) with the studio's VTIMEZONE."""

from __future__ import annotations

from datetime import date, timedelta

from icalendar import Calendar, Event, Timezone

from models.base import utcnow
from models.calendar import CalendarEntry
from models.config import Settings


def render_calendar(entries: list[CalendarEntry], settings: Settings, *, today: date) -> bytes:
    """The `.ics` bytes: one VEVENT per entry, times in the studio's zone with its VTIMEZONE."""
    calendar = Calendar()
    calendar.add("prodid", f"-//{settings.STUDIO_NAME}//Lessons//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", f"{settings.STUDIO_NAME} lessons")
    calendar.add("x-wr-timezone", settings.STUDIO_TIMEZONE)
    # The zone's transitions around the feed's window (calendar apps need the DST rules in use).
    calendar.add_component(
        Timezone.from_tzid(
            settings.STUDIO_TIMEZONE, first_date=today - timedelta(days=400), last_date=today + timedelta(days=400)
        )
    )
    stamp = utcnow()
    for entry in entries:
        event = Event()
        event.add("uid", f"{entry.uid}@studio")
        event.add("dtstamp", stamp)
        event.add("dtstart", entry.start)
        event.add("dtend", entry.end)
        event.add("summary", entry.summary)
        event.add("description", entry.description)
        if entry.location:
            event.add("location", entry.location)
        event.add("status", "TENTATIVE" if entry.tentative else "CONFIRMED")
        calendar.add_component(event)
    return calendar.to_ical()
