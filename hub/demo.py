"""`hub demo`: the whole hub against the shipped mock plant, on the embedded defaults.

It starts the mock systems on free loopback ports, migrates the SQLite store,
runs the full-sync job on a local Dagster instance and reads the outcome back from
the store and from what the mock systems received. The `alternate` flavor points the
hub at the EAM's Maximo OSLC face and the MES's SAP OData face instead, by settings alone;
`real-apis` at the EAM's Maximo REST API, the MES's S/4HANA standard OData services and the
ERP's SAP journal-entry SOAP service.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx
from dagster import DagsterEventType, DagsterInstance

import mock_systems
from hub.instance import ensure_dagster_home
from hub.settings import HubSettings, SystemEndpoint
from hub.steps.gate import permits_in_scope
from hub.store.repository import HubStore
from hub.sync import run_full_sync
from mock_systems.servers import start_systems

EAM_WSDL = Path(mock_systems.__file__).with_name("eam.wsdl")
ERP_WSDL = Path(mock_systems.__file__).with_name("erp_journal_entry.wsdl")

class Face(NamedTuple):
    """A mock system's face: the server, the flavor file, and the URL's path on the server when
    it is not the server's own (S/4HANA's services sit side by side below /sap/opu/odata/sap)."""

    system: str
    mapping: str
    root: str | None = None

    def url(self, systems) -> str:
        return systems.urls[self.system] if self.root is None else systems.base_urls[self.system] + self.root


#: Per demo flavor: the face the EAM and the MES are reached through.
FLAVORS: dict[str, dict[str, Face]] = {
    "standard": {"eam": Face("eam", "eam"), "mes": Face("mes", "mes"), "erp": Face("erp", "erp")},
    "alternate": {
        "eam": Face("eam_oslc", "eam-maximo-oslc"), "mes": Face("mes_odata", "mes-sap-odata"), "erp": Face("erp", "erp"),
    },
    "real-apis": {
        "eam": Face("eam_oslc", "eam-maximo"),
        "mes": Face("mes_odata", "mes-sap-s4", "/sap/opu/odata/sap"),
        "erp": Face("erp", "erp-sap-soap"),
    },
}


@dataclass
class DemoReport:
    success: bool
    permits_synced: int
    devices_looked_up: int
    eam_calls: int
    mes_calls: int
    blocked: dict[str, list[str]] = field(default_factory=dict)  # permit -> "CODE device: message"
    blocked_codes: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    allowed: list[str] = field(default_factory=list)
    postings: list[tuple[str, str, str | None]] = field(default_factory=list)  # key, amount, document
    quarantined: list[str] = field(default_factory=list)
    holds_written: int = 0
    erp_posts_received: int = 0
    site_problems: list[str] = field(default_factory=list)  # permits or sites outside the gate


def _requests(base_url: str, path_prefix: str = "", method: str | None = None) -> list[dict]:
    received = httpx.get(f"{base_url}/_admin/received", timeout=10).json()
    return [r for r in received if r["path"].startswith(path_prefix) and method in (None, r["method"])]


def _metadata(instance: DagsterInstance, run_ids: list[str], asset: str, key: str) -> int:
    """A materialization's metadata value, summed over the sites' runs."""
    total = 0
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            if materialization and materialization.asset_key.to_user_string() == asset:
                total += int(materialization.metadata[key].value)
    return total


def demo_settings(systems, database_url: str, flavor: str) -> HubSettings:
    """The hub's settings for the mock plant `systems`, reaching the EAM and MES by `flavor`."""
    eam, mes, erp = (FLAVORS[flavor][name] for name in ("eam", "mes", "erp"))
    return HubSettings(
        database_url=database_url,
        ptw=SystemEndpoint(url=systems.urls["ptw"]),
        eam=SystemEndpoint(url=eam.url(systems), mapping=eam.mapping),
        mes=SystemEndpoint(url=mes.url(systems), mapping=mes.mapping),
        erp=SystemEndpoint(url=erp.url(systems), mapping=erp.mapping),
        eam_wsdl=str(EAM_WSDL),
        erp_wsdl=str(ERP_WSDL),
    )


def run_demo(
    fixtures: Path, workdir: Path, fresh: bool = False, flavor: str = "standard", live: Callable | None = None
) -> DemoReport:
    """The demo; `live(systems, settings)` is called after the sync, while the mocks still run."""
    workdir = workdir.resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ensure_dagster_home(workdir / "dagster_home")
    database_url = os.environ.get("HUB_DATABASE_URL", f"sqlite:///{workdir / 'hub.db'}")

    eam_system, mes_system = FLAVORS[flavor]["eam"].system, FLAVORS[flavor]["mes"].system
    with start_systems(fixtures, state_dir=workdir / "mock_state") as systems:
        settings = demo_settings(systems, database_url, flavor)
        with DagsterInstance.get() as instance:
            result = run_full_sync(settings, instance)
            permits_synced = _metadata(instance, result.run_ids, "permits", "dagster/row_count")

        eam_requests = _requests(systems.base_urls[eam_system])
        mes_requests = _requests(systems.base_urls[mes_system])
        holds = _requests(systems.base_urls["ptw"], "/api/v1/permits/", "PUT")
        # Every post to the ERP, whichever face (REST bulk, SOAP service) the flavor speaks.
        erp_posts = [r for r in _requests(systems.base_urls["erp"], "", "POST") if not r["path"].startswith("/_admin")]
        if live is not None:
            live(systems, settings)

    store = HubStore(database_url)
    decisions = store.latest_gate_decisions()
    # A device is (site, number): the same number at two sites is two lookups.
    devices = {(p.site, d) for site in settings.sites for p in permits_in_scope(store, site) for d in p.device_ids}
    report = DemoReport(
        success=result.success,
        permits_synced=permits_synced,
        devices_looked_up=len(devices),
        eam_calls=len(eam_requests),
        mes_calls=len(mes_requests),
        holds_written=len(holds),
        erp_posts_received=len(erp_posts),
        site_problems=[*result.unconfigured_sites, *result.unknown_sites],
    )
    for decision in decisions:
        if decision.decision == "block":
            report.blocked[decision.permit_id] = [
                f"{r.code} {r.device_id or ''}: {r.message}".replace(" :", ":") for r in decision.reasons
            ]
            report.blocked_codes[decision.permit_id] = [(r.code, r.device_id) for r in decision.reasons]
        else:
            report.allowed.append(decision.permit_id)
    report.postings = [(r["entry_key"], r["payload"]["amount"], r["accounting_document"]) for r in store.load_outbox()]
    report.quarantined = [f"{q['system']}/{q['record_kind']} {q['source_key']}: {q['reason']}" for q in store.list_quarantine()]
    return report
