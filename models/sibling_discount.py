"""The sibling discount (issue 15, item 4): `SIBLING_DISCOUNT_PERCENT` off every live billed
enrollment of a family but one, the full-price one; 0 turns it off.

Which one pays full price: the family's most expensive live billed enrollment, prices compared
per week of lessons (weekly: the plan's amount; semester: its amount per lesson, one lesson a
week; monthly: the amount × 12 / 52), ties going to the oldest booking (a moved booking counts
from the booking it continues). Live billed: a plan (not offline), `active`, `past_due` or
`paused`, and not moved on to another slot; a hold being billed is ranked with them.

The discount is Stripe's: a percent-off coupon on the subscription (weekly, monthly), or taken
off the semester's one charge. `Enrollment.discount_percent` records what Stripe applies. When
an enrollment becomes active or stops being live (cancelled, cancelled at its period end, ended
by dunning, its subscription deleted...) a session hook notes it and, after commit, hands it to
the dispatcher a process installs (`set_discount_dispatcher`: the worker's
`rebalance_sibling_discounts`), which moves the coupons so that the rule holds again; the
nightly Stripe reconciliation re-runs it for a family whose records break the rule (a task lost
with a killed worker). A semester charge is never re-priced: a paid semester keeps the discount
it was charged with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from models.audit import change_audited
from models.billing import Plan, discount_cents
from models.config import get_settings
from models.db import after_commit
from models.enrollment import ACTIVE, HOLD_STATUSES, LIVE_STATUSES, PAST_DUE, PAUSED, Enrollment, lock_enrollment
from models.people import Student

# Billed after the first payment: these hold the discount (a hold is ranked only while billed).
BILLED_STATUSES = (ACTIVE, PAST_DUE, PAUSED)
# The plans whose discount is a coupon on a subscription (Stripe can move it).
SUBSCRIBED = ("weekly", "monthly")
NOTED_KEY = "sibling_discount_noted"
COUPON_PREFIX = "sibling-"


def discount_percent() -> int:
    """The studio's sibling discount in percent (0: off)."""
    return get_settings().SIBLING_DISCOUNT_PERCENT


def coupon_id(percent: int) -> str:
    """Our Stripe coupon for `percent` off (`sibling-10`): one per percent, made once, forever."""
    return f"{COUPON_PREFIX}{percent}"


def weekly_price(plan: Plan) -> Fraction:
    """A plan's price per week of lessons, the measure that ranks a family's enrollments."""
    if plan.frequency == "monthly":
        return Fraction(plan.amount_cents * 12, 52)
    return Fraction(plan.amount_cents)  # weekly: per week; semester: per lesson, one a week


def term_cents(plan: Plan | None, dates: list[date], percent: int = 0) -> tuple[int, int]:
    """What a term of `dates` costs on `plan` and what `percent` off takes away: weekly plans
    per lesson, monthly per calendar month that has a lesson (each an invoice the coupon is
    applied to), semester plans one charge for every lesson. Offline enrollments cost nothing here."""
    if plan is None or not dates:
        return 0, 0
    if plan.frequency == "semester":
        amount = plan.amount_cents * len(dates)
        return amount, discount_cents(amount, percent)
    units = len({(day.year, day.month) for day in dates}) if plan.frequency == "monthly" else len(dates)
    return plan.amount_cents * units, discount_cents(plan.amount_cents, percent) * units


@dataclass(frozen=True)
class Target:
    """One billed enrollment of a family and the discount the rule gives it."""

    enrollment_id: int
    frequency: str
    subscription_id: str | None
    stored_percent: int  # what Stripe applies, as recorded
    percent: int  # what the rule says
    changes: int  # `discount_changes`: the next change's idempotency key uses changes + 1

    @property
    def movable(self) -> bool:
        """A subscription's coupon can be moved; a semester's charge stays as it was paid."""
        return self.frequency in SUBSCRIBED and bool(self.subscription_id)


def _family_rows(session: Session, payee_id: int) -> list[tuple[Enrollment, Plan]]:
    return list(
        session.exec(
            select(Enrollment, Plan)
            .join(Student, col(Student.id) == col(Enrollment.student_id))
            .join(Plan, col(Plan.id) == col(Enrollment.plan_id))
            .where(col(Student.payee_id) == payee_id, col(Enrollment.offline).is_(False))
        ).all()
    )


def ranked(session: Session, payee_id: int, *, including: Enrollment | None = None) -> list[tuple[Enrollment, Plan]]:
    """The family's live billed enrollments (and `including`, a hold being billed), the
    full-price one first: most expensive per week, then the oldest booking."""
    rows = _family_rows(session, payee_id)
    by_id = {enrollment.id: enrollment for enrollment, _ in rows}
    moved_on = {enrollment.moved_from_id for enrollment, _ in rows if enrollment.status in LIVE_STATUSES}

    def origin(enrollment: Enrollment) -> datetime:
        seen = {enrollment.id}
        while enrollment.moved_from_id in by_id and enrollment.moved_from_id not in seen:
            enrollment = by_id[enrollment.moved_from_id]
            seen.add(enrollment.id)
        return enrollment.created_at

    live = [
        (enrollment, plan)
        for enrollment, plan in rows
        if (enrollment.status in BILLED_STATUSES and enrollment.id not in moved_on)
        or (including is not None and enrollment.id == including.id)
    ]
    return sorted(live, key=lambda row: (-weekly_price(row[1]), origin(row[0]), row[0].id))


def family_targets(session: Session, payee_id: int) -> list[Target]:
    """Every live billed enrollment of the family with the discount the rule gives it (none
    when the discount is off)."""
    percent = discount_percent()
    if not percent:
        return []
    return [
        Target(
            enrollment_id=enrollment.id,
            frequency=plan.frequency,
            subscription_id=enrollment.stripe_subscription_id,
            stored_percent=enrollment.discount_percent,
            percent=percent if position else 0,
            changes=enrollment.discount_changes,
        )
        for position, (enrollment, plan) in enumerate(ranked(session, payee_id))
    ]


def families_out_of_balance(session: Session) -> list[int]:
    """For each family whose recorded discounts break the rule (a rebalancing task lost with a
    killed worker), the id of one of its billed enrollments: what the nightly reconciliation
    hands to `rebalance_sibling_discounts`. Only subscriptions count (a semester keeps its charge)."""
    if not discount_percent():
        return []
    statement = (
        select(Student.payee_id, sa.func.min(col(Enrollment.id)))
        .join(Student, col(Student.id) == col(Enrollment.student_id))
        .where(
            col(Enrollment.status).in_(BILLED_STATUSES), col(Enrollment.plan_id).is_not(None), col(Enrollment.offline).is_(False)
        )
        .group_by(col(Student.payee_id))
        .having(sa.or_(sa.func.count() > 1, sa.func.max(col(Enrollment.discount_percent)) > 0))
    )
    return [
        enrollment_id
        for payee_id, enrollment_id in session.exec(statement).all()
        if any(target.movable and target.percent != target.stored_percent for target in family_targets(session, payee_id))
    ]


def booking_discount(session: Session, enrollment: Enrollment, *, actor: str) -> int:
    """The discount a hold is billed with (its subscription's coupon, or off its semester
    charge): the rule with the hold ranked among the family's billed enrollments. Recorded on
    the hold (audited) when it differs from what was recorded, so the confirmation and a later
    run (a 3-D Secure wait, a retry) see what Stripe was asked for."""
    percent = discount_percent()
    if percent:
        student = session.get(Student, enrollment.student_id)
        first = ranked(session, student.payee_id, including=enrollment)[0][0]
        percent = 0 if first.id == enrollment.id else percent
    if enrollment.status in HOLD_STATUSES and enrollment.discount_percent != percent:
        change_audited(session, enrollment, actor=actor, action="enrollment.discount", discount_percent=percent)
    return percent


def record_discount(session: Session, enrollment_id: int, *, percent: int, subscription_id: str, actor: str) -> bool:
    """Stripe now applies `percent` to the enrollment's subscription: recorded (audited as
    `enrollment.discount`, the change counted). False (nothing written) when it was recorded
    already, or the enrollment no longer bills that subscription."""
    enrollment = lock_enrollment(session, enrollment_id)
    if enrollment is None or enrollment.stripe_subscription_id != subscription_id or enrollment.discount_percent == percent:
        return False
    change_audited(
        session,
        enrollment,
        actor=actor,
        action="enrollment.discount",
        discount_percent=percent,
        discount_changes=enrollment.discount_changes + 1,
    )
    return True


# Noticing the enrollments that change a family's ranking ------------------------------------

_discount_dispatcher: Callable[[int], object] | None = None


def set_discount_dispatcher(dispatcher: Callable[[int], object] | None) -> None:
    """Install what rebalances the family of enrollment `id` after commit (None: nothing)."""
    global _discount_dispatcher
    _discount_dispatcher = dispatcher


def _reranks(obj: object) -> bool:
    """A flushed change that may move the family's discount: a billed enrollment (not offline)
    becoming active after its hold, or leaving the live statuses."""
    if not isinstance(obj, Enrollment) or obj.plan_id is None or obj.offline:
        return False
    history = sa.inspect(obj).attrs.status.history
    if not history.deleted:
        return False
    before = history.deleted[0]
    activated = before in HOLD_STATUSES and obj.status == ACTIVE
    ended = before in BILLED_STATUSES and obj.status not in LIVE_STATUSES
    return activated or ended


def _note_reranks(session: OrmSession, _context) -> None:
    dispatcher = _discount_dispatcher
    if dispatcher is None or not discount_percent():
        return
    noted: set[int] = session.info.setdefault(NOTED_KEY, set())
    for obj in session.dirty:
        if isinstance(obj, Enrollment) and obj.id is not None and obj.id not in noted and _reranks(obj):
            noted.add(obj.id)
            after_commit(session, functools.partial(dispatcher, obj.id))  # type: ignore[arg-type]


def _forget_noted(session: OrmSession, *_args) -> None:
    session.info.pop(NOTED_KEY, None)


event.listen(OrmSession, "after_flush", _note_reranks)
event.listen(OrmSession, "after_commit", _forget_noted)
event.listen(OrmSession, "after_rollback", _forget_noted)
