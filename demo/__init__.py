"""The walkthrough `make demo` runs: one booking through the whole system, printed step by step.

python -m demo.walkthrough   # on a migrated, seeded studio.db (`studioctl db upgrade`, `studioctl seed demo`)
"""
