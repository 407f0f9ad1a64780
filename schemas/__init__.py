"""pcigate's event contract, v1.

Every audit event pcigate produces is a JSON object with a fixed envelope (who, what, when, where
from, on what, with what result: the PCI DSS 10.2.2 details) and type-specific ``data``. The contract
exists twice, kept identical by tests: as JSON Schema 2020-12 files in ``schemas/json`` for any
consumer (the evidence service, SIEMs), and as pydantic models for Python code. Both are closed:
a field the contract does not name is an error, which keeps stray values such as a card number out
of the audit trail. ``schemas/README.md`` documents each type and its PCI DSS mapping.

This package imports nothing else of pcigate, so any component (or a SIEM's tooling) can use it.
"""

from schemas.errors import EventInvalid
from schemas.ids import format_utc, new_event_id, parse_utc, utc_now
from schemas.models import EVENT_MODELS, EVENT_TYPES, SCHEMA_VERSION, AnyEvent, Envelope, parse_event
from schemas.registry import load_schema, pci_requirements, validate, validator

__all__ = [
    "EVENT_MODELS",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "AnyEvent",
    "Envelope",
    "EventInvalid",
    "format_utc",
    "load_schema",
    "new_event_id",
    "parse_event",
    "parse_utc",
    "pci_requirements",
    "utc_now",
    "validate",
    "validator",
]
