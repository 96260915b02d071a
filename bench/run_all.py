"""Run every benchmark one after the other and write `bench/results.md`.

Each benchmark is run in this process by its `run()`; one that fails is reported as such
and the others still run. The results file holds every figure with its baseline, ratio and
target, the machine (CPU count, memory, CPU model, versions) and the date.

    python -m bench.run_all [--only booking,cli]
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from pathlib import Path

from bench.common import Figure, machine_facts, print_figures

BENCHES = ("booking", "discovery", "cli", "dashboard", "pipeline", "memory", "school")
RESULTS = Path(__file__).resolve().parent / "results.md"
KEPT_SECTION = "## Optimisations"  # hand-written before/after notes: carried over by every run


def kept_section(path: Path) -> str:
    """The `## Optimisations` section of an existing results file (heading to the end), or ''."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    start = text.find("\n" + KEPT_SECTION)
    return text[start + 1 :].rstrip() + "\n" if start >= 0 else ""


def render_markdown(figures: list[Figure], failures: dict[str, str], facts: dict[str, str], seconds: float) -> str:
    """The results as Markdown: one table of figures, failures, the machine."""
    lines = [
        "# Benchmark results",
        "",
        f"Run with `python -m bench.run_all` (`make bench`) on {facts.get('date', '?')} in {seconds:.0f} s.",
        "Each ratio is against a baseline measured in the same run on the same machine; the machine is",
        "shared and noisy, so read ratios, not absolute numbers.",
        "",
        "| bench | figure | value | baseline (same run) | ratio | target | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for figure in figures:
        name, value, baseline, ratio, target, verdict = figure.as_row()
        verdict = {"met": "met", "MISSED": "**missed**"}.get(verdict, verdict)
        lines.append(f"| {figure.bench} | {name} | {value} | {baseline} | {ratio} | {target} | {verdict} |")
    notes = [f"- {figure.bench} / {figure.name}: {figure.note}" for figure in figures if figure.note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    if failures:
        lines += ["", "## Benchmarks that did not finish", ""]
        lines += [f"- `{name}`: {error}" for name, error in failures.items()]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in facts.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the chosen benchmarks (all by default), print each table, write results.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help="comma list of benchmarks to run")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the Markdown results")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]

    started = time.perf_counter()
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        print(f"--- bench.{name}", flush=True)
        try:
            result = module.run()
        except Exception as error:  # one broken bench must not hide the others' figures
            traceback.print_exc()
            failures[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            continue
        print_figures(f"bench.{name}", result)
        figures.extend(result)
    elapsed = time.perf_counter() - started
    output = Path(args.output)
    kept = kept_section(output)
    output.write_text(render_markdown(figures, failures, machine_facts(), elapsed) + ("\n" + kept if kept else ""))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
