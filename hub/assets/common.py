"""Small pieces every asset needs: scope, quarantine hand-off, table schemas and metadata previews."""


from collections import Counter
from collections.abc import Sequence

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    Config,
    MetadataValue,
    PartitionsDefinition,
    TableColumn,
    TableColumnConstraints,
    TableRecord,
    TableSchema,
)
from pydantic import Field
from sqlalchemy import Table

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


def drift_spec(asset: str, partitions_def: PartitionsDefinition | None = None) -> AssetCheckSpec:
    """Partitioned like its asset, so each site's results have a history of their own."""
    return AssetCheckSpec(
        DRIFT_CHECK,
        asset=asset,
        description="Every vendor field that arrives is read by the mapping (or listed under `ignore`).",
        partitions_def=partitions_def,
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


def column_schema(table: Table) -> TableSchema:
    """The asset's canonical table as Dagster's `dagster/column_schema`, read from the store's own definition."""
    return TableSchema(
        columns=[
            TableColumn(
                column.name,
                str(column.type).lower(),
                constraints=TableColumnConstraints(
                    nullable=bool(column.nullable), unique=bool(column.unique) or list(table.primary_key) == [column]
                ),
            )
            for column in table.columns
        ]
    )


def _cell(value) -> str | int | float | bool | None:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def preview(rows: Sequence[dict], limit: int = 10) -> MetadataValue:
    """The first rows as a table the UI shows in columns (a Markdown table wraps)."""
    shown = list(rows)[:limit]
    columns = list(dict.fromkeys(name for row in shown for name in row))
    return MetadataValue.table(
        [TableRecord({name: _cell(row.get(name)) for name in columns}) for row in shown],
        TableSchema(columns=[TableColumn(name) for name in columns]),
    )
