"""Issue 11, items 9 and 17: an export is safe to open in a spreadsheet and holds no
credential; `plans add` and `semesters add` check their input before anything is written, and
a plan is saved only with its Stripe Price (a command that exits 1 has changed nothing)."""

from __future__ import annotations

import csv

import pytest

from tests import factories
from tests.support.cli import ok, ok_json, refused, row_counts
from tests.support.processes import free_port

FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(A1:A9)", "\tindented", "\rreturned"]


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_item_09_export_neutralises_cells_that_start_like_formulas(db, session, tmp_path):
    family = factories.payee(session, name="=cmd|' /C calc'!A0")
    for name in [*FORMULAS, "Ada", "Zoë-Ann"]:
        factories.student(session, payee_row=family, name=name)
    session.commit()
    ok("export", "student", "--out", tmp_path / "students.csv")
    rows = _rows(tmp_path / "students.csv")
    assert [row["name"] for row in rows] == ["'" + name for name in FORMULAS] + ["Ada", "Zoë-Ann"]
    assert {row["payee_id"] for row in rows} == {str(family.id)}  # numbers stay numbers
    ok("export", "payee", "--out", tmp_path / "payees.csv")
    [payee] = _rows(tmp_path / "payees.csv")
    assert payee["name"] == "'=cmd|' /C calc'!A0"


def test_item_09_export_payee_redacts_the_calendar_token_as_the_audit_log_does(db, session, tmp_path):
    from models.audit import REDACTED, snapshot

    family = factories.payee(session)
    session.commit()
    ok("export", "payee", "--out", tmp_path / "payees.csv")
    [row] = _rows(tmp_path / "payees.csv")
    assert row["calendar_token"] == REDACTED == snapshot(family)["calendar_token"]
    assert family.calendar_token not in (tmp_path / "payees.csv").read_text()
    assert row["email"] == family.email  # the rest is exported as it is


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--amount", "30.00", "--currency", "xyz"), "'xyz' is not an ISO 4217 currency code"),
        (("--amount", "30.00", "--currency", "dollars"), "is not an ISO 4217 currency code"),
        (("--amount", "30.00", "--currency", "xau"), "is not an ISO 4217 currency code"),  # gold: not a price
        (("--amount", "3000", "--currency", "jpy"), "JPY does not have two decimals"),  # would charge 300,000 yen
        (("--amount", "30.000", "--currency", "kwd"), "KWD does not have two decimals"),
        (("--amount", "0"), "amount must be more than 0"),
        (("--amount", "0.00", "--offline"), "amount must be more than 0"),
        (("--amount", "-5"), "not a non-negative amount"),
        (("--amount", "1000000.00"), "amount must be at most 999999.99"),
        (("--amount", "30", "--name", "x" * 81), "at most 80 characters"),
    ],
)
def test_item_17_plans_add_checks_currency_and_amount_before_anything(db, session, monkeypatch, args, message):
    from models.config import reset_settings

    # Stripe is configured but nobody answers there: a call would fail with a connection error.
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_unreached")
    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
    reset_settings()
    before = row_counts(session)
    refused("plans", "add", "--frequency", "monthly", *args, message=message)
    assert row_counts(session) == before


def test_item_17_a_plan_whose_stripe_price_fails_is_not_saved(db, session, stripe_env):
    before = row_counts(session)
    stripe_env.fault("/v1/prices", method="POST", fail_times=1, status=400, type="invalid_request_error")
    refused("plans", "add", "--frequency", "weekly", "--amount", "30.00", message="no plan was saved")
    assert row_counts(session) == before  # no plan, no audit row
    view = ok_json("plans", "add", "--frequency", "weekly", "--amount", "30.00")  # Stripe is back: saved with its Price
    assert view["stripe_price_id"].startswith("price_") and view["currency"] == "usd"
    assert [plan["id"] for plan in ok_json("plans", "list")] == [view["id"]]


def test_item_17_without_stripe_configured_nothing_is_saved_unless_offline(db, session):
    before = row_counts(session)
    refused("plans", "add", "--frequency", "monthly", "--amount", "120", message="STRIPE_SECRET_KEY is not set")
    assert row_counts(session) == before
    view = ok_json("plans", "add", "--frequency", "monthly", "--amount", "120", "--currency", "EUR", "--offline")
    assert view["currency"] == "eur" and view["stripe_price_id"] is None


@pytest.mark.parametrize("name", ["", "   "])
def test_item_17_semesters_add_refuses_an_empty_name(db, session, name):
    before = row_counts(session)
    refused(
        "semesters", "add", "--name", name, "--starts", "2027-01-11", "--ends", "2027-05-14", message="a semester needs a name"
    )
    assert row_counts(session) == before
