"""Small pieces every asset needs: scope, quarantine hand-off and metadata previews."""


from collections import Counter
from collections.abc import Sequence

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, Config, MetadataValue
from pydantic import Field

# Re-exported for the assets, the benchmark and the harnesses.
from hub.steps.gate import SYNC_SCOPE_STATUSES, ChangeScope, device_ids_of, devices_in_scope, permits_in_scope  # noqa: F401
from hub.steps.records import lineage_of, mapping_label, quarantine_rejects  # noqa: F401


DRIFT_CHECK = "vendor_fields_mapped"


class ChangeScopeConfig(Config):
    """Set by the regate_on_change sensor. Both lists empty, as in a sync or a launch from the
    UI: the whole site."""

    permits: list[str] = Field(default=[], description="Changed permit IDs: re-gate these.")
    devices: list[str] = Field(default=[], description="Devices whose EAM data changed: re-gate the permits on them.")

    def scope(self) -> ChangeScope | None:
        if not self.permits and not self.devices:
            return None
        return ChangeScope(frozenset(self.permits), frozenset(self.devices))


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
