"""The shared layer: tables and the operations on them, one module per domain area.

Kept empty on purpose: `studioctl --help` must not pay for importing SQLModel. Import the
area modules directly (`from models.booking import hold_slot`), or `models.tables` for
the full metadata.
"""
