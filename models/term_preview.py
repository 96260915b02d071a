"""The term preview: what a semester holds for each family before it is billed.

Every lesson date of each live enrollment in the semester (closures removed, DST-change weeks
flagged), lesson counts and amounts per enrollment and per family, at full price and with the
sibling discount Stripe applies. `studioctl term-preview` prints it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.clock import is_dst_change_week, slot_label
from models.config import get_settings

if TYPE_CHECKING:
    from models.scheduling import Semester


def term_preview(session: Session, semester: Semester, *, payee_id: int | None = None) -> dict:
    """Every lesson date of each live enrollment in `semester` (closures removed, DST-change
    weeks flagged), with lesson counts and amounts per enrollment and per family: `amount_cents`
    at full price, `discount_cents` the sibling discount Stripe applies (`term_cents`).

    Four statements whatever the size (closures, the enrollments' columns, their plans); the
    lesson list is built once per slot time and date range and shared by the enrollments that
    have the same one (2,500 enrollments of a school have a few hundred)."""
    from models.billing import Plan
    from models.enrollment import ACTION_REQUIRED, ACTIVE, PAST_DUE, PAUSED, PROVISIONAL, Enrollment
    from models.people import Instrument, Payee, Student, Teacher
    from models.scheduling import Timeslot, closures_of, slot_dates
    from models.sibling_discount import term_cents

    settings = get_settings()
    tz = settings.tz
    closures = closures_of(session, semester.id)
    statement = (
        sa.select(
            col(Enrollment.id),
            col(Enrollment.status),
            col(Enrollment.start_date),
            col(Enrollment.end_date),
            col(Enrollment.discount_percent),
            col(Enrollment.plan_id),
            col(Timeslot.weekday),
            col(Timeslot.start_minute),
            col(Student.name),
            col(Payee.id),
            col(Payee.name),
            col(Payee.email),
            col(Teacher.name),
            col(Instrument.name),
        )
        .join(Timeslot, col(Timeslot.id) == col(Enrollment.timeslot_id))
        .join(Teacher, col(Teacher.id) == col(Timeslot.teacher_id))
        .join(Student, col(Student.id) == col(Enrollment.student_id))
        .join(Payee, col(Payee.id) == col(Student.payee_id))
        .join(Instrument, col(Instrument.id) == col(Enrollment.instrument_id))
        .where(
            col(Enrollment.semester_id) == semester.id,
            col(Enrollment.status).in_((PROVISIONAL, ACTION_REQUIRED, ACTIVE, PAST_DUE, PAUSED)),
        )
        .order_by(col(Enrollment.id))
    )
    if payee_id is not None:
        statement = statement.where(col(Student.payee_id) == payee_id)
    rows = session.execute(statement).all()
    plan_ids = sorted({row[5] for row in rows if row[5] is not None})
    plans = {plan.id: plan for plan in session.exec(select(Plan).where(col(Plan.id).in_(plan_ids))).all()} if plan_ids else {}
    terms: dict[tuple[int, int, date, date], tuple[list[date], list[dict]]] = {}
    prices: dict[tuple, tuple[int, int]] = {}  # (term, plan, percent) → (amount, discount)
    labels: dict[tuple[int, int], str] = {}
    # What each plan says, read once (not an ORM attribute per enrollment).
    plan_fields = {plan_id: (plan.frequency, plan.currency) for plan_id, plan in plans.items()}
    enrollments: list[dict] = []
    families: defaultdict[int, dict[str, Any]] = defaultdict(
        lambda: {"lessons": 0, "amount_cents": 0, "discount_cents": 0, "enrollment_ids": []}
    )
    for (
        enrollment_id,
        status,
        start_date,
        end_date,
        percent,
        plan_id,
        weekday,
        start_minute,
        student,
        family_id,
        payee,
        email,
        teacher,
        instrument,
    ) in rows:
        first = max(semester.starts_on, start_date)
        last = min(semester.ends_on, end_date) if end_date else semester.ends_on
        key = (weekday, start_minute, first, last)
        if key not in terms:
            dates = slot_dates(weekday, first, last, closures)
            terms[key] = (
                dates,
                [{"date": day.isoformat(), "dst_change": is_dst_change_week(day, start_minute, tz)} for day in dates],
            )
        dates, lessons = terms[key]
        price_key = (key, plan_id, percent)
        if price_key not in prices:
            prices[price_key] = term_cents(plans.get(plan_id) if plan_id is not None else None, dates, percent)
        amount, discount = prices[price_key]
        frequency, currency = plan_fields.get(plan_id, ("offline", settings.CURRENCY))
        label = labels.get((weekday, start_minute)) or labels.setdefault(
            (weekday, start_minute), slot_label(weekday, start_minute)
        )
        enrollments.append(
            {
                "id": enrollment_id,
                "status": status,
                "payee_id": family_id,
                "payee": payee,
                "teacher": teacher,
                "student": student,
                "instrument": instrument,
                "slot": label,
                "plan": frequency,
                "lessons": lessons,
                "lesson_count": len(dates),
                "amount_cents": amount,
                "discount_percent": percent if plan_id in plan_fields else 0,
                "discount_cents": discount,
                "currency": currency,
            }
        )
        family = families[family_id]
        family.update(payee_id=family_id, payee=payee, email=email)
        family["lessons"] += len(dates)
        family["amount_cents"] += amount
        family["discount_cents"] += discount
        family["enrollment_ids"].append(enrollment_id)
    return {
        "semester": {
            "id": semester.id,
            "name": semester.name,
            "starts_on": semester.starts_on.isoformat(),
            "ends_on": semester.ends_on.isoformat(),
            "closures": sorted(day.isoformat() for day in closures),
        },
        "enrollments": enrollments,
        "families": sorted(families.values(), key=lambda family: family["payee"]),
        "total_cents": sum(family["amount_cents"] for family in families.values()),
        "discount_cents": sum(family["discount_cents"] for family in families.values()),
    }
