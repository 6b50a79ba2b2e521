"""Small pieces every asset needs: scope, quarantine hand-off and metadata previews."""


from collections.abc import Iterable, Sequence

import pandas as pd
from collections import Counter

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from hub.failpoints import failpoint
from hub.mappings.engine import Mapping, Rejected
from hub.model import Permit
from hub.store.repository import HubStore, QuarantineItem

# Permits whose equipment and materials the hub keeps current: anything that may still be worked.
SYNC_SCOPE_STATUSES = ("submitted", "approved", "active", "suspended")


def permits_in_scope(store: HubStore, site: str | None = None) -> list[Permit]:
    return store.load_permits(statuses=SYNC_SCOPE_STATUSES, site=site)


def device_ids_of(permits: Iterable[Permit]) -> set[str]:
    return {device for permit in permits for device in permit.device_ids}


def lineage_of(mapping: Mapping) -> tuple[str, str]:
    return mapping.name, mapping.sha256


def mapping_label(mapping: Mapping) -> str:
    return f"{mapping.name} sha256:{mapping.sha256[:12]}"


def quarantine_rejects(store: HubStore, system: str, mapping: Mapping, rejected: Sequence[Rejected]) -> int:
    failpoint("quarantine.before_write")
    return store.quarantine(
        [
            QuarantineItem(
                system=system,
                record_kind=item.kind,
                source_key=item.source_key,
                payload=item.payload,
                field=item.field,
                reason=item.reason,
                source_file=str(mapping.source_file),
                partial=item.partial,
            )
            for item in rejected
        ]
    )


DRIFT_CHECK = "vendor_fields_mapped"


def drift_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        DRIFT_CHECK,
        asset=asset,
        description="Every vendor field that arrives is read by the mapping (or listed under `ignore`).",
    )


def drift_result(asset: str, unmapped: Counter[str]) -> AssetCheckResult:
    """A warning naming vendor fields no mapping reads: a vendor change the mapping has not caught up with."""
    return AssetCheckResult(
        asset_key=asset,
        check_name=DRIFT_CHECK,
        passed=not unmapped,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "unmapped_fields": ", ".join(sorted(unmapped)) or "none",
            "records_with_unmapped_fields": MetadataValue.json(dict(sorted(unmapped.items()))),
        },
    )


def preview(rows: Sequence[dict], limit: int = 10) -> MetadataValue:
    if not rows:
        return MetadataValue.md("_(none)_")
    return MetadataValue.md(pd.DataFrame(list(rows)[:limit]).to_markdown(index=False))
