"""The plant systems at the hub's edges, as external assets: the lineage starts at the systems
the hub reads and ends at the records it writes there, which Dagster does not materialize."""

from urllib.parse import urlsplit

from dagster import AssetKey, AssetSpec

from hub.mappings.engine import Mapping, load_mapping
from hub.settings import HubSettings, SystemEndpoint

PTW, EAM, MES, ERP = (AssetKey(name) for name in ("ptw", "eam", "mes", "erp"))
PTW_HOLDS, ERP_JOURNAL = AssetKey("ptw_holds"), AssetKey("erp_journal_entries")


def without_credentials(url: str) -> str:
    """The URL as metadata may show it: no user, no password."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def flavor_of(settings: HubSettings, system: str) -> Mapping:
    """The flavor file the system is spoken to by, as the resources load it."""
    return load_mapping(getattr(settings, system).mapping or system)


def protocol_kinds(flavor: Mapping) -> set[str]:
    """How the flavor reaches its system: `rest`, `soap`, and `odata` for one that writes OData filters."""
    endpoint = flavor.spec.endpoint
    kinds = set(endpoint.protocols())
    if any(op.batch is not None and op.batch.escape == "odata" for op in endpoint.operations.values()):
        kinds.add("odata")
    return kinds


def _system_spec(key: AssetKey, settings: HubSettings, system: str, what: str, deps=()) -> AssetSpec:
    endpoint: SystemEndpoint = getattr(settings, system)
    flavor = flavor_of(settings, system)
    return AssetSpec(
        key,
        deps=deps,
        group_name=system,
        description=f"{what} — {flavor.spec.description or system.upper()} (flavor {flavor.name}); not materialized by the hub.",
        kinds=protocol_kinds(flavor),
        owners=[settings.asset_owner],
        metadata={"url": without_credentials(endpoint.url), "flavor": flavor.name},
    )


def system_specs(settings: HubSettings, holds_from: list, entries_from: list) -> list[AssetSpec]:
    """The four systems, and the PTW holds and ERP journal entries the writers in `holds_from`
    and `entries_from` put there."""
    return [
        _system_spec(PTW, settings, "ptw", "The permit-to-work system the permits are read from"),
        _system_spec(EAM, settings, "eam", "The maintenance system equipment and work orders are read from"),
        _system_spec(MES, settings, "mes", "The MES process parameters and quality rates are read from"),
        _system_spec(ERP, settings, "erp", "The ERP whose ledger the postings are settled and reconciled against"),
        _system_spec(PTW_HOLDS, settings, "ptw", "Holds the gate writes on blocked permits at the PTW", holds_from),
        _system_spec(ERP_JOURNAL, settings, "erp", "Safety-cost journal entries posted to the ERP", entries_from),
    ]
