"""The audit trail: one event model for every source, a batching SQLite writer, queries."""

from .model import CATEGORIES, CATEGORY_EGRESS, Action, EgressEvent, Reason, Source, format_time
from .recorder import PolicyView, Recorder
from .service import AuditService, AuditUnavailableError

__all__ = [
    "CATEGORIES",
    "CATEGORY_EGRESS",
    "Action",
    "AuditService",
    "AuditUnavailableError",
    "EgressEvent",
    "PolicyView",
    "Reason",
    "Recorder",
    "Source",
    "format_time",
]
