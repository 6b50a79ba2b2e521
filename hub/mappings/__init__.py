"""Mapping files (data, never code) between vendor records and the canonical model."""

from hub.mappings.engine import (
    TRANSFORMS,
    InboundResult,
    Mapping,
    MappingAbort,
    OutboundError,
    Rejected,
    VendorRecord,
    load_mapping,
    packaged_mappings,
    parse_mapping,
)
from hub.mappings.source import site_overlays
from hub.mappings.spec import KINDS

__all__ = [
    "KINDS",
    "TRANSFORMS",
    "InboundResult",
    "Mapping",
    "MappingAbort",
    "OutboundError",
    "Rejected",
    "VendorRecord",
    "load_mapping",
    "packaged_mappings",
    "parse_mapping",
    "site_overlays",
]
