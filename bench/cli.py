"""Start-up cost of the admin CLI, against the bare imports it cannot avoid.

- `studioctl --help` ÷ `python -c 'import typer'`                  (target ≤ 2.0)
- `studioctl dashboard today --json` on the demo database ÷
  `python -c 'import sqlmodel'`                                   (target ≤ 1.5)
- peak RSS of any of those `studioctl` runs                       (target ≤ 100 MB)

Each command runs 7 times after one warm-up; the median wall time counts. The demo
database is the embedded default (SQLite) built by `studioctl db upgrade` and
`studioctl seed demo` in `bench/.work/cli/`. With `--importtime`, the slowest imports of
the dashboard command (`python -X importtime`) are listed too.

    python -m bench.cli [--repeat 7] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import subprocess

from bench.common import PYTHON, VENV_BIN, Figure, bound_figure, median_time, print_figures, ratio_figure, work_dir

BENCH = "cli"


def demo_env() -> dict[str, str]:
    """Environment of a CLI run on the demo SQLite database in `bench/.work/cli/`."""
    folder = work_dir("cli")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "STRIPE_SECRET_KEY", "STRIPE_API_BASE", "MAILJET_API_KEY", "HUEY_NAME")
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'demo.db'}",
            "OUTBOX_DIR": str(folder / "outbox"),
            "STUDIO_TIMEZONE": "America/New_York",
        }
    )
    return env


def build_demo_database(env: dict[str, str]) -> None:
    """A fresh demo database: `studioctl db upgrade` then `studioctl seed demo`."""
    folder = work_dir("cli")
    for suffix in ("", "-wal", "-shm"):
        (folder / f"demo.db{suffix}").unlink(missing_ok=True)
    (folder / "demo-huey.db").unlink(missing_ok=True)
    studioctl = str(VENV_BIN / "studioctl")
    for argv in ([studioctl, "db", "upgrade"], [studioctl, "seed", "demo"]):
        subprocess.run(argv, env=env, cwd=folder, check=True, capture_output=True, timeout=120)


def slowest_imports(argv: list[str], env: dict[str, str], *, top: int = 12) -> list[tuple[float, str]]:
    """The `top` biggest cumulative import times (ms) of running `argv` under `-X importtime`."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", *argv], env=env, cwd=work_dir("cli"), capture_output=True, text=True, timeout=60
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        rows.append((int(cumulative_us) / 1000, name.strip()))
    return sorted(rows, reverse=True)[:top]


def run(*, repeat: int = 7, importtime: bool = False) -> list[Figure]:
    """Time the CLI and its baselines; the figures of this benchmark."""
    env = demo_env()
    build_demo_database(env)
    cwd = work_dir("cli")
    studioctl = str(VENV_BIN / "studioctl")
    typer_time, _ = median_time([PYTHON, "-c", "import typer"], repeat=repeat, env=env, cwd=cwd)
    sqlmodel_time, _ = median_time([PYTHON, "-c", "import sqlmodel"], repeat=repeat, env=env, cwd=cwd)
    help_time, help_rss = median_time([studioctl, "--help"], repeat=repeat, env=env, cwd=cwd)
    dash_time, dash_rss = median_time([studioctl, "dashboard", "today", "--json"], repeat=repeat, env=env, cwd=cwd)
    figures = [
        ratio_figure(
            BENCH,
            "studioctl --help",
            help_time * 1000,
            "ms",
            baseline_name="import typer",
            baseline=typer_time * 1000,
            at_most=2.0,
        ),
        ratio_figure(
            BENCH,
            "studioctl dashboard today --json (demo DB)",
            dash_time * 1000,
            "ms",
            baseline_name="import sqlmodel",
            baseline=sqlmodel_time * 1000,
            at_most=1.5,
        ),
        bound_figure(
            BENCH,
            "peak RSS of studioctl",
            max(help_rss, dash_rss),
            "MB",
            at_most=100,
            note=f"--help {help_rss:.0f} MB, dashboard {dash_rss:.0f} MB",
        ),
    ]
    if importtime:
        imports = slowest_imports(["-m", "studioctl.main", "dashboard", "today", "--json"], env)
        figures[1].note = "slowest imports: " + ", ".join(f"{name} {ms:.0f} ms" for ms, name in imports)
    return figures


def main() -> None:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--importtime", action="store_true", help="list the slowest imports of the dashboard command")
    args = parser.parse_args()
    print_figures("bench.cli", run(repeat=args.repeat, importtime=args.importtime))


if __name__ == "__main__":
    main()
