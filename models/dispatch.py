"""Where side effects after commit go: a registry with no dependencies.

The domain queues an email row in the caller's transaction; what enqueues its send once the
transaction commits is installed here by each process entry point (`workers.wiring.install()`
from the CLI's root group, `create_app` and the consumer's entry module) — never by the side
effect of importing a module. With nothing installed (a script, a test that wants rows only)
the rows wait for `retry_stuck_emails`.
"""

from __future__ import annotations

from collections.abc import Callable

_email_dispatcher: Callable[[int], object] | None = None


def set_email_dispatcher(dispatcher: Callable[[int], object] | None) -> None:
    """Install what enqueues the send of EmailLog `id` after commit (None: nothing)."""
    global _email_dispatcher
    _email_dispatcher = dispatcher


def email_dispatcher() -> Callable[[int], object] | None:
    """The installed dispatcher, if any."""
    return _email_dispatcher


_sms_dispatcher: Callable[[int], object] | None = None
_before_first_unit: Callable[[], object] | None = None


def set_before_first_unit(hook: Callable[[], object] | None) -> None:
    """Install what runs before a process's first writing unit of work (`models.db.session_scope`;
    `write=False` units change nothing, so they do not wait for it): the entry points use it to load
    what a `--help` or a read-only command must not (the waiting list's after-flush hook)."""
    global _before_first_unit
    _before_first_unit = hook


def run_before_first_unit() -> None:
    """Run the installed hook once (then forget it)."""
    global _before_first_unit
    hook, _before_first_unit = _before_first_unit, None
    if hook is not None:
        hook()


def set_sms_dispatcher(dispatcher: Callable[[int], object] | None) -> None:
    """Install what enqueues the send of SmsLog `id` after commit (None: nothing)."""
    global _sms_dispatcher
    _sms_dispatcher = dispatcher


def sms_dispatcher() -> Callable[[int], object] | None:
    """The installed SMS dispatcher, if any."""
    return _sms_dispatcher
