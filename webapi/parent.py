"""`/parent/*`: the `parent` blueprint of a signed-in family's routes, and its own data here
(payee, students, payment setup). Its bookings and absences are in `webapi.parent_bookings`,
its make-ups, lessons and calendar in `webapi.parent_lessons`: both add their routes to this
blueprint (so every endpoint stays `parent.<view>`), and `webapi/__init__.py` imports them
before the blueprint is registered.

Every route needs our bearer token (401 otherwise); the calendar also accepts the
family's secret `?token=` so calendar apps can subscribe. Each route opens one unit of
work and calls one domain operation; ids from the client are always looked up within the
caller's family, so another family's object is a 404 (never a 403 that would confirm it
exists). Writes are audited as `payee:<id>` by the operations themselves.
"""

from __future__ import annotations

from flask import current_app, g, request, url_for
from flask_openapi3 import APIBlueprint, Tag

from models import family
from models.access import register_sign_in
from models.db import session_scope
from models.enrollment import archive_student
from models.errors import Forbidden
from models.people import Payee, Student, add_student, get_student, update_student
from models.reminders import set_reminders
from webapi.schemas import (
    PageQuery,
    PayeeOut,
    PayeePatch,
    PayeeUpdate,
    PaymentSetupOut,
    Problem,
    Reminders,
    RemindersOut,
    StudentCreate,
    StudentOut,
    StudentPage,
    StudentPath,
    StudentUpdate,
    decode_cursor,
    page,
)
from webapi.security import require_identity

tag = Tag(name="parent", description="The signed-in family (bearer token from /auth/exchange)")
bp = APIBlueprint(
    "parent",
    __name__,
    url_prefix="/parent",
    abp_tags=[tag],
    abp_security=[{"bearer": []}],
    abp_responses={401: Problem, 403: Problem, 404: Problem, 422: Problem, 503: Problem},
)


@bp.before_request
def _authenticate():
    if request.method == "OPTIONS":  # CORS preflight carries no credentials
        return
    if request.endpoint == "parent.calendar" and request.args.get("token"):
        return  # the subscription token is checked by the view
    require_identity()


def _settings():
    return current_app.config["STUDIO_SETTINGS"]


def _payee(session, *, lock: bool = False) -> Payee:
    payee = family.payee_for_user(session, g.identity.sub, lock=lock)
    if payee is None:
        raise Forbidden("register first with PUT /parent/payee", type="payee-required")
    return payee


def _actor(payee: Payee | family.PayeeRef) -> str:
    return f"payee:{payee.id}"


# Payee -----------------------------------------------------------------------------------


def _calendar_url(token: str) -> str:
    # From PUBLIC_BASE_URL, never from the request: its Host header (or a script root) is the
    # client's to choose, and this URL carries the family's secret.
    path = current_app.url_map.bind("").build("parent.calendar", {"token": token})
    return _settings().public_base_url + path


def _payee_out(payee: Payee) -> dict:
    calendar_url = _calendar_url(payee.calendar_token)
    return PayeeOut(
        id=payee.id,
        email=payee.email,
        name=payee.name,
        phone=payee.phone,
        has_billing_customer=payee.stripe_customer_id is not None,
        reminders=RemindersOut(email=payee.remind_by_email, sms=payee.remind_by_sms),
        calendar_url=calendar_url,
    ).model_dump(mode="json")


@bp.get("/payee", responses={200: PayeeOut})
def get_payee():
    """The caller's payee record (403 `payee-required` until `PUT /parent/payee`)."""
    with session_scope(write=False) as session:
        return _payee_out(_payee(session))


@bp.put("/payee", responses={200: PayeeOut, 409: Problem})
def put_payee(body: PayeeUpdate):
    """Create or update the caller's payee (idempotent); the email always comes from the token.

    A family record the studio made with the same email is claimed only when the sign-in's
    email is verified, else 409 `link-required`; `invite_code` (from the studio, once, 7 days)
    claims it whatever the email (403 `invite-invalid`, `invite-used`, `invite-expired`).
    """
    identity = g.identity
    with session_scope() as session:
        payee = register_sign_in(
            session,
            supabase_user_id=identity.sub,
            email=identity.email,
            email_verified=identity.email_verified,
            name=body.name,
            phone=body.phone,
            invite_code=body.invite_code,
        )
        _set_reminders(session, payee, body.reminders, phone=body.phone)
        return _payee_out(payee)


@bp.patch("/payee", responses={200: PayeeOut, 403: Problem, 422: Problem})
def patch_payee(body: PayeePatch):
    """Change some of the caller's payee record: name, phone, lesson reminder channels
    (`{"reminders": {"email": true, "sms": false}}`); fields left out are unchanged. SMS needs a
    valid phone number (422 `invalid`, field `phone`); numbers are stored in E.164."""
    identity = g.identity
    with session_scope() as session:
        _payee(session)  # 403 payee-required before PUT /parent/payee
        payee = register_sign_in(
            session,
            supabase_user_id=identity.sub,
            email=identity.email,
            email_verified=identity.email_verified,
            name=body.name,
            phone=body.phone,
        )
        _set_reminders(session, payee, body.reminders, phone=body.phone)
        return _payee_out(payee)


def _set_reminders(session, payee: Payee, reminders: Reminders | None, *, phone: str | None) -> None:
    """The request's reminder channels (and its phone, in E.164 while SMS is on); audited."""
    if reminders is None and not (phone and payee.remind_by_sms):
        return
    set_reminders(
        session,
        payee,
        email=reminders.email if reminders else None,
        sms=reminders.sms if reminders else None,
        phone=phone,
        actor=_actor(payee),
    )


# Students --------------------------------------------------------------------------------


def _student_out(student: Student) -> dict:
    return StudentOut(id=student.id, name=student.name, birth_date=student.birth_date, notes=student.notes).model_dump(
        mode="json"
    )


@bp.get("/students", responses={200: StudentPage})
def list_students(query: PageQuery):
    """The family's students."""
    with session_scope(write=False) as session:
        rows = family.students_page(session, _payee(session).id, after_id=decode_cursor(query.cursor), limit=query.limit)
    items, next_cursor = page(rows, query.limit)
    return {"items": [_student_out(row) for row in items], "next_cursor": next_cursor}


@bp.post("/students", responses={201: StudentOut, 409: Problem})
def create_student(body: StudentCreate):
    """Add a child to the family: 409 `too-many-students` past `MAX_STUDENTS_PER_PAYEE` (archived ones do not count)."""
    with session_scope() as session:
        payee = _payee(session)
        student = add_student(
            session,
            payee=payee,
            name=body.name,
            birth_date=body.birth_date,
            notes=body.notes,
            actor=_actor(payee),
            max_students=_settings().MAX_STUDENTS_PER_PAYEE,
        )
        out = _student_out(student)
    return out, 201, {"Location": url_for("parent.get_student_route", student_id=out["id"])}


@bp.get("/students/<int:student_id>", responses={200: StudentOut})
def get_student_route(path: StudentPath):
    """One of the family's students."""
    with session_scope(write=False) as session:
        return _student_out(get_student(session, path.student_id, payee_id=_payee(session).id))


@bp.patch("/students/<int:student_id>", responses={200: StudentOut})
def patch_student(path: StudentPath, body: StudentUpdate):
    """Change a student's name, birth date or notes (`null` clears the optional ones)."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    with session_scope() as session:
        payee = _payee(session)
        student = get_student(session, path.student_id, payee_id=payee.id)
        student = update_student(session, student, actor=_actor(payee), **changes)
        return _student_out(student)


@bp.delete("/students/<int:student_id>", responses={204: None, 409: Problem})
def delete_student(path: StudentPath):
    """Remove a student from the family list (409 while they hold a live booking)."""
    with session_scope() as session:
        payee = _payee(session)
        archive_student(session, get_student(session, path.student_id, payee_id=payee.id), actor=_actor(payee))
    return "", 204


# Payment setup ---------------------------------------------------------------------------


@bp.post("/payment-setup", responses={200: PaymentSetupOut, 502: Problem})
def payment_setup():
    """A Stripe SetupIntent client secret for the family's customer (card entry in the app)."""
    from workers.payments import create_payment_setup  # imports stripe: only when a parent sets up a card

    with session_scope(write=False) as session:
        payee_id = _payee(session).id
    result = create_payment_setup(payee_id)
    return PaymentSetupOut(client_secret=result["client_secret"]).model_dump()
