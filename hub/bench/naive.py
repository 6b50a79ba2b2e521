"""The per-record connector the hub is compared with: what a first integration usually looks like.

It pages the permits as any client must and maps them with the hub's mappings, then works
permit by permit: one EAM SOAP call through zeep for every device a permit in scope names,
one MES call for every material, the gate decided with the hub's own logic, one PTW hold
PUT per blocked permit and one ERP post per cost entry of a closed permit, each record
written to the store on its own. Nothing is cached across permits, so a device named by
ten permits is fetched ten times. It keeps no audit chain, which only flatters it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx
import zeep
from zeep.helpers import serialize_object
from zeep.transports import Transport

from hub.assets.common import SYNC_SCOPE_STATUSES, lineage_of, quarantine_rejects
from hub.assets.costs import cost_problem
from hub.logic.clearance import DeviceProfile, SiteEam, build_profiles
from hub.logic.costs import CostError, cost_entries, message_uuid
from hub.logic.gate import decide, decision_fingerprint, invalid_permit_decisions
from hub.logic.rules import load_cost_rules, load_gate_rules
from hub.mappings.engine import load_mapping
from hub.model import GateDecision, Permit, SafetyCostEntry
from hub.settings import HubSettings
from hub.store.migrate import upgrade
from hub.steps.gate import EAM_ANSWERED, quarantined_permits
from hub.store.repository import HubStore

EAM_BINDING = "{urn:plant:eam:maintenance:v1}AssetMaintenanceBinding"
TIMEOUT_S = 30


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _vendor_fields(element: dict[str, Any]) -> dict[str, Any]:
    """A zeep-parsed element as the vendor's text fields again, which is what the mapping reads."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in element.items() if v is not None}


@dataclass
class NaiveOutcome:
    permits_listed: int = 0
    permits_synced: int = 0
    permits_in_scope: int = 0
    listing_s: float = 0.0  # paging through the PTW: paid once, whatever the sample
    listing_calls: int = 0
    devices: set[str] = field(default_factory=set)
    work_orders: set[str] = field(default_factory=set)
    materials: set[str] = field(default_factory=set)
    erp_entries: int = 0
    decisions: list[GateDecision] = field(default_factory=list)

    def records(self) -> int:
        return self.permits_synced + len(self.devices) + len(self.work_orders) + len(self.materials) + self.erp_entries


class NaiveConnector:
    def __init__(self, settings: HubSettings):
        upgrade(settings.database_url)
        self.store = HubStore(settings.database_url)
        self.hold_source = settings.hold_source
        self.sites = set(settings.sites)
        self.ptw_mapping, self.eam_mapping = load_mapping("ptw"), load_mapping("eam")
        self.mes_mapping, self.erp_mapping = load_mapping("mes"), load_mapping("erp")
        self.gate_rules = load_gate_rules(settings.gate_rules_file)
        self.cost_rules = load_cost_rules(settings.cost_rules_file)
        self.cost_rules_file = settings.cost_rules_file
        self.ptw = httpx.Client(base_url=settings.ptw.url, timeout=TIMEOUT_S)
        self.mes = httpx.Client(base_url=settings.mes.url, timeout=TIMEOUT_S)
        self.erp = httpx.Client(base_url=settings.erp.url, timeout=TIMEOUT_S)
        client = zeep.Client(
            settings.eam_wsdl or f"{settings.eam.url}?wsdl",
            transport=Transport(operation_timeout=TIMEOUT_S),
            # Lenient, so that a record missing a field reaches the mapping (and quarantine) instead
            # of failing the whole reply.
            settings=zeep.Settings(strict=False),
        )
        self.eam = client.create_service(EAM_BINDING, settings.eam.url)
        self.page_size = self.ptw_mapping.spec.endpoint.operations["permits_changed"].requests[0].pages.size
        self.outcome = NaiveOutcome()

    def close(self) -> None:
        for client in (self.ptw, self.mes, self.erp):
            client.close()
        self.store.dispose()

    def run(self, every: int = 1) -> NaiveOutcome:
        """Sync every `every`-th permit of the listing (all when 1): a sample spread over the
        whole listing, so it holds open and closed permits in the plant's own proportions."""
        for position, raw in enumerate(self._listed_permits()):
            self.outcome.permits_listed += 1
            if position % every:
                continue
            self.outcome.permits_synced += 1
            mapped = self.ptw_mapping.inbound("permit", [raw])
            for rejected in mapped.quarantined:
                quarantine_rejects(self.store, "ptw", self.ptw_mapping, [rejected])
            for permit in mapped.records:
                self._sync_permit(permit)
        for decision in invalid_permit_decisions(quarantined_permits(self.store, None), self.gate_rules, _now()):
            self._record_decision(decision)
        return self.outcome

    def _listed_permits(self) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"page_size": self.page_size}
        while True:
            started = time.perf_counter()
            page = self.ptw.get("/api/v1/permits", params=params).raise_for_status().json()
            self.outcome.listing_s += time.perf_counter() - started
            self.outcome.listing_calls += 1
            yield from page["items"]
            if not page.get("next_page_token"):
                return
            params["page_token"] = page["next_page_token"]

    def _sync_permit(self, permit: Permit) -> None:
        self.store.upsert_permits([permit], _now(), lineage_of(self.ptw_mapping))
        profiles: dict[str, DeviceProfile] = {}
        if permit.status in SYNC_SCOPE_STATUSES and permit.site in self.sites:
            self.outcome.permits_in_scope += 1
            for device in permit.device_ids:
                profiles[device] = self._device_profile(permit.site, device)
            for name in permit.material_names:
                self._fetch_material(name)
        decision = decide(permit, profiles, self.gate_rules, _now(), site_configured=permit.site in self.sites)
        if decision is not None:
            self._record_decision(decision)
        if permit.status == "closed":
            try:
                entries = cost_entries(permit, self.cost_rules)
            except CostError as exc:
                self.store.quarantine([cost_problem(permit, exc, self.cost_rules_file)])
                return
            for entry in entries:
                self._post_entry(entry)

    def _device_profile(self, site: str, device: str) -> DeviceProfile:
        reply = serialize_object(self.eam.GetAssetMaintenance(siteid=site, assetnum=[device]), dict)
        fetched_at = _now()
        equipment = self.eam_mapping.inbound("equipment", [_vendor_fields(a) for a in reply["asset"] or []])
        orders = self.eam_mapping.inbound("maintenance_record", [_vendor_fields(w) for w in reply["workorder"] or []])
        lineage = lineage_of(self.eam_mapping)
        for item in equipment.records:
            self.store.upsert_equipment([item], fetched_at, lineage)
            self.outcome.devices.add(item.device_id)
        for record in orders.records:
            self.store.upsert_maintenance_records([record], fetched_at, lineage=lineage)
            self.outcome.work_orders.add(record.record_id)
        self.store.record_lookups(EAM_ANSWERED, [device], fetched_at, site=site)
        for rejected in equipment.quarantined + orders.quarantined:
            quarantine_rejects(self.store, "eam", self.eam_mapping, [rejected])
        invalid = [r.reason for r in orders.quarantined + equipment.quarantined if r.partial.get("device_id") == device]
        found = {item.device_id: item for item in equipment.records}
        eam = SiteEam(site, found, orders.records, {device: fetched_at}, {device: invalid})
        profiles = build_profiles([device], eam, self.gate_rules, _now())
        return profiles[device]

    def _fetch_material(self, name: str) -> None:
        reply = self.mes.get(f"/api/v1/materials/{quote(name, safe='')}/parameters")
        self.outcome.materials.add(name)
        if reply.status_code == 404:
            return  # the MES does not know it: no parameters
        parameters = self.mes_mapping.inbound("process_parameter", [reply.raise_for_status().json()])
        for parameter in parameters.records:
            self.store.upsert_process_parameters([parameter], _now(), lineage_of(self.mes_mapping))
        for rejected in parameters.quarantined:
            quarantine_rejects(self.store, "mes", self.mes_mapping, [rejected])

    def _record_decision(self, decision: GateDecision) -> None:
        fingerprint = decision_fingerprint(decision)
        self.store.append_gate_decisions([decision], [fingerprint])
        self.outcome.decisions.append(decision)
        if decision.decision != "block":
            return
        body = self.ptw_mapping.outbound("gate_decision", decision)
        self.ptw.put(f"/api/v1/permits/{decision.permit_id}/holds/{self.hold_source}", json=body).raise_for_status()
        self.store.record_holds_written([(decision.permit_id, fingerprint, "block")], _now())

    def _post_entry(self, entry: SafetyCostEntry) -> None:
        uuid = str(message_uuid(entry.entry_key))
        self.store.enqueue_entries([entry], {entry.entry_key: uuid})
        # The flavor writes the entry's MessageHeader (its UUID is the idempotency key), as for the hub.
        request = self.erp_mapping.outbound("safety_cost_entry", entry, {"idempotency_key": uuid, "sent_at": _now()})
        confirmation = self.erp.post("/api/v1/journal-entries", json=request).raise_for_status().json()
        document = (confirmation.get("JournalEntry") or {}).get("AccountingDocument")
        if document:
            self.store.mark_posted([(entry.entry_key, document, confirmation["JournalEntry"].get("FiscalYear"))])
        else:
            self.store.mark_rejected([(entry.entry_key, str(confirmation.get("Log")))])
        self.outcome.erp_entries += 1


def run_naive(settings: HubSettings, every: int = 1) -> NaiveOutcome:
    connector = NaiveConnector(settings)
    try:
        return connector.run(every)
    finally:
        connector.close()
