"""Email rendering: `templates/email/<name>/{subject.txt, body.txt, body.html}` with Jinja2.

StrictUndefined (a missing value is an error, never a blank), HTML autoescaped, text not.
The context is the one stored on the EmailLog row when the email was queued, plus the
studio's name and time zone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape

from models.config import get_settings
from models.outbox import TEMPLATES

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates" / "email"


class RenderError(Exception):
    """A template could not be rendered with its context (a bug: retrying will not help)."""


@dataclass(frozen=True)
class RenderedEmail:
    """One message ready for a backend."""

    subject: str
    text: str
    html: str


@functools.cache
def environment() -> Environment:
    """The Jinja2 environment for email templates."""
    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def base_context() -> dict:
    """What every template may use besides the email's own context."""
    settings = get_settings()
    return {"studio_name": settings.STUDIO_NAME, "timezone": settings.STUDIO_TIMEZONE}


def render_email(template: str, context: dict) -> RenderedEmail:
    """Render the three parts of `template`; RenderError when the context does not fit."""
    if template not in TEMPLATES:
        raise RenderError(f"unknown email template {template!r}")
    values = base_context() | dict(context)
    env = environment()
    try:
        subject = env.get_template(f"{template}/subject.txt").render(values)
        text = env.get_template(f"{template}/body.txt").render(values)
        html = env.get_template(f"{template}/body.html").render(values)
    except TemplateError as error:
        raise RenderError(f"template {template}: {error}") from None
    return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)
