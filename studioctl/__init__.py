"""`studioctl`: the admin's terminal for the studio (Typer + Rich)."""
