"""`studioctl doctor`: is the studio's system working? One line per check, ✔ or ✘, and what to do.

The checks live in `workers/health.py` (what each looks at, what "not configured" means);
this command prints them and exits 1 when any failed.
"""

from __future__ import annotations

import typer

from studioctl.common import JsonOption, emit_json, get_console

SYMBOLS = {"ok": "[green]✔[/]", "fail": "[bold red]✘[/]", "skipped": "[dim]–[/]"}


def register(app: typer.Typer) -> None:
    """Add the `doctor` command to the root app."""

    @app.command()
    def doctor(json_output: bool = JsonOption) -> None:
        """Check that the studio's system works, one line per check with what to do when it fails:
        settings, the database at the migrations' head, Redis, the Stripe key (test or live), the
        webhook secret and the active plans' Prices, Mailjet's credentials and sender, a consumer
        alive (its heartbeat), the periodic jobs on schedule, open dead letters, holds past their
        expiry. Exit 0 when every check passes, 1 otherwise. Network checks wait 5 s at most.

        Example: studioctl doctor
        """
        from workers.health import run_checks
        from workers.health_outcome import FAIL, SKIPPED

        checks = run_checks()
        failed = [check for check in checks if check.status == FAIL]
        if json_output:
            emit_json({"ok": not failed, "failed": [check.name for check in failed], "checks": [c.as_dict() for c in checks]})
        else:
            from rich.markup import escape

            console = get_console()
            for check in checks:
                line = f"{SYMBOLS[check.status]} [bold]{check.title}[/]: {escape(check.detail)}"
                if check.status == FAIL and check.fix:
                    line += f" [yellow]→ {escape(check.fix)}[/]"
                elif check.status == SKIPPED:
                    line = f"[dim]{line}[/]"
                console.print(line, soft_wrap=True, highlight=False)
            if failed:
                names = ", ".join(check.title for check in failed)
                console.print(f"[bold red]{len(failed)} of {len(checks)} checks failed:[/] {names}", highlight=False)
            else:
                console.print(f"[green]All {len(checks)} checks passed.[/]", highlight=False)
        if failed:
            raise typer.Exit(1)
