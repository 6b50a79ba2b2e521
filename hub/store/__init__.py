"""The hub's store: tables, migrations and the bulk repository (SQLAlchemy Core)."""

from hub.store.records import AuditBatch, GateDecisionRow, OutboxRow, QuarantineItem
from hub.store.repository import HubStore, SchemaNotReadyError

__all__ = ["HubStore", "SchemaNotReadyError", "QuarantineItem", "OutboxRow", "GateDecisionRow"]
