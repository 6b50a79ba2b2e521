"""Pulling from the MES, when due: the process parameters of the permits' materials, and each
site's monthly quality rates.

Both change rarely (a material's flash point, a month's defect rate), and asking for all of them
on every sync was work that did not follow change. A material, or a site's rates, is asked for
when the hub has never had an answer for it, or when its last answer is older than
`refresh_every`; a material of a newly changed permit that the MES has never answered for is
therefore asked at once. Only what the MES answered for counts as answered (a material with
parameters or with a record that could not be read, a site with rates): a name the reply is
silent about, and a site whose reply is empty, are asked again next time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hub.steps.records import lineage_of, map_inbound, quarantine_rejects

#: The lookups the MES answered, by material name (plant-wide: a material is the same at every site).
MES_ANSWERED = "mes.parameters"
#: The lookups of quality rates the MES answered, by site.
MES_QUALITY_ANSWERED = "mes.quality"


@dataclass
class ParameterPull:
    in_scope: int = 0  # materials named by the permits in scope
    asked: list[str] = field(default_factory=list)
    records: list = field(default_factory=list)
    quarantined: int = 0
    unknown: list[str] = field(default_factory=list)  # asked, and the MES said nothing of them
    unmapped: Counter = field(default_factory=Counter)


def due(hub_store, lookup: str, keys: Collection[str], refresh_every: timedelta, now: datetime) -> list[str]:
    """The keys to ask the MES about: never answered (by `lookup`), or answered longer ago than
    `refresh_every` (every one of them with a zero interval)."""
    if not refresh_every:
        return sorted(keys)
    answered = hub_store.lookup_times(lookup, keys)
    return sorted(k for k in keys if k not in answered or now - answered[k] >= refresh_every)


def materials_due(hub_store, names: Collection[str], refresh_every: timedelta, now: datetime) -> list[str]:
    """The materials whose process parameters are due."""
    return due(hub_store, MES_ANSWERED, names, refresh_every, now)


def pull_parameters(hub_store, client, mapping, names: Collection[str], refresh_every: timedelta) -> ParameterPull:
    """Ask the MES for the due materials among `names`, store what it answers, quarantine the bad;
    raises the client's errors (nothing is marked answered then)."""
    now = datetime.now(timezone.utc)
    out = ParameterPull(in_scope=len(set(names)), asked=materials_due(hub_store, set(names), refresh_every, now))
    if not out.asked:
        return out
    with client:
        vendor_records = client.fetch("parameters", ids=set(out.asked)).get("process_parameter", [])
        result = map_inbound(mapping, client, "process_parameter", vendor_records)
    hub_store.upsert_process_parameters(result.records, now, lineage_of(mapping))
    out.records = result.records
    out.quarantined = quarantine_rejects(hub_store, "mes", mapping, result.quarantined)
    out.unmapped = Counter(mapping.unmapped_fields("process_parameter", vendor_records))
    # A name the MES does not know simply has no parameters, in every flavor.
    answered = {p.material_name for p in result.records} | {
        r.partial["material_name"] for r in result.quarantined if "material_name" in r.partial
    }
    hub_store.record_lookups(MES_ANSWERED, sorted(answered & set(out.asked)), now)
    out.unknown = sorted(set(out.asked) - answered)
    return out


@dataclass
class QualityPull:
    asked: list[str] = field(default_factory=list)  # sites
    records: list = field(default_factory=list)
    quarantined: int = 0
    unmapped: Counter = field(default_factory=Counter)


def pull_quality_rates(hub_store, client, mapping, sites: Collection[str], refresh_every: timedelta) -> QualityPull:
    """Ask the MES for the quality rates of the due sites, store them in one write, quarantine the
    bad; raises the client's errors (nothing is stored or marked answered then)."""
    now = datetime.now(timezone.utc)
    out = QualityPull(asked=due(hub_store, MES_QUALITY_ANSWERED, sites, refresh_every, now))
    vendor_records, rejected = [], []
    with client:
        for site in out.asked:
            fetched = client.fetch("quality", site=site).get("quality_rate", [])
            result = map_inbound(mapping, client, "quality_rate", fetched)
            vendor_records += fetched
            out.records += result.records
            rejected += result.quarantined
    hub_store.upsert_quality_rates(out.records, now, lineage_of(mapping))
    hub_store.record_lookups(MES_QUALITY_ANSWERED, sorted({r.site for r in out.records} & set(out.asked)), now)
    out.quarantined = quarantine_rejects(hub_store, "mes", mapping, rejected)
    out.unmapped = Counter(mapping.unmapped_fields("quality_rate", vendor_records))
    return out
