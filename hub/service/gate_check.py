"""One synchronous gate check: the permit, fresh EAM data for its devices, the decision, its trail.

The PTW asks before it approves a permit. The check maps the PTW's record, asks the EAM again
for every device whose last good answer is older than the rules' `decision_data_age`, decides
with the one decision function (`hub.logic.gate.decide`), appends the decision to the audit
trail, writes the PTW hold through the one hold writer and reports the answer to Dagster.

It fails closed: an EAM that does not answer in time blocks the devices it was asked about
(EAM_UNREACHABLE), and anything that goes wrong inside the hub blocks the permit (GATE_ERROR).
Old data never allows.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hub.connectors.retry import TransientError, VendorRejected
from hub.logic.analytics_rules import AnalyticsRules, load_analytics_rules
from hub.logic.clearance import DeviceProfile, iso
from hub.logic.gate import decide, decision_fingerprint, invalid_permit_decisions, is_gated, with_reasons
from hub.logic.rules import RULES_DIR, GateRules, load_gate_rules
from hub.mappings.engine import MappingAbort, load_mapping
from hub.model import GateDecision, Permit, Reason
from hub.resources import EamResource, HubStoreResource, PtwResource, resources_from_settings
from hub.settings import HubSettings
from hub.steps.eam import pull_site
from hub.service.freshness import KeepFresh
from hub.service.similar_work import SimilarWorkAdvice
from hub.service.trail import TrailWriter
from hub.steps.gate import EAM_ANSWERED, clearance_profiles
from hub.steps.records import quarantine_rejects
from hub.store.repository import HubStore
from hub.writers.ptw_holds import write_holds

log = logging.getLogger("hub.service")

#: The asset the service's answers are reported on in Dagster.
GATE_ASSET = "permit_gate_decisions"
#: What an answer says when the rules do not gate the permit.
NOT_GATED = "not_gated"

#: Answers are reported to Dagster about this often: a site's answers in that time as one event.
#: Reported every second, the events took about a tenth of a busy service's CPU, and each
#: process's CPU is what its checks' audit commits wait on.
REPORT_EVERY_S = 5.0
#: Permits listed in one report's table (the counts cover them all).
REPORT_ROWS = 200
#: Answers waiting to be reported; beyond this, an answer is reported while its caller waits.
REPORT_BACKLOG = 10_000

#: The permit ID of a record whose ticket number could not be read.
UNREADABLE = "(unreadable)"


class PermitNotRead(Exception):
    """The permit could not be read from the PTW."""


@dataclass
class GateAnswer:
    """What the service answers, and what it did to get there."""

    permit_id: str
    decision: str  # "allow", "block" or NOT_GATED
    evaluated_at: datetime
    rule_version: str
    reasons: list[Reason] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    decision_id: str | None = None
    site: str | None = None
    eam_refreshed: list[str] = field(default_factory=list)
    eam_error: str | None = None
    hold_error: str | None = None
    similar_work: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "permit_id": self.permit_id,
            "decision": self.decision,
            "reasons": [r.model_dump(mode="json") for r in self.reasons],
            "rule_version": self.rule_version,
            "devices": self.devices,
            "decision_id": self.decision_id,
            "evaluated_at": iso(self.evaluated_at),
            "eam_refreshed": self.eam_refreshed,
            "similar_work": self.similar_work,
        }


def _eam_unreachable(site: str, devices: list[str], error: str, asked_at: datetime) -> list[Reason]:
    return [
        Reason(
            code="EAM_UNREACHABLE",
            device_id=device,
            message=f"the EAM did not answer in time for {device} at site {site}, so its clearance is not current: {error}",
            evidence={"site": site, "eam_error": error, "asked_at": iso(asked_at)},
        )
        for device in devices
    ]


def _gate_error(permit_id: str, problem: str, rules_version: str, now: datetime) -> GateDecision:
    reason = Reason(
        code="GATE_ERROR",
        message=f"the hub could not decide permit {permit_id}: {problem}; treat it as blocked and ask again",
        evidence={"problem": problem},
    )
    return GateDecision(permit_id=permit_id, decision="block", reasons=(reason,), rule_version=rules_version, evaluated_at=now)


class GateCheckService:
    """Answers gate checks for one hub configuration; safe to call from several threads."""

    def __init__(self, settings: HubSettings):
        self.settings = settings
        self.sites = frozenset(settings.sites)
        # EnvVar-bound secrets resolve here, outside any Dagster run.
        deadline = settings.gate_api.eam_deadline_s
        quick = settings.model_copy(
            update={
                "request_deadline_s": deadline,
                "retry_attempts": 1,
                "retry_budget_s": deadline,
                "connect_timeout_s": min(settings.connect_timeout_s, deadline),
                "read_timeout_s": min(settings.read_timeout_s, deadline),
            }
        )
        # The caller waits: the EAM, and the PTW for the permit and its hold, get one short try each.
        # A hold that does not land is written by the next gate run; the answer stands either way.
        quick_resources = resources_from_settings(quick)
        self.eam: EamResource = quick_resources["eam"].process_config_and_initialize()
        self.ptw: PtwResource = quick_resources["ptw"].process_config_and_initialize()
        self.keep_fresh = KeepFresh(self, resources_from_settings(settings)["eam"].process_config_and_initialize())
        self.ptw_mapping = load_mapping(self.ptw.mapping)
        self.eam_mapping = load_mapping(self.eam.mapping)
        self._store: HubStore | None = None
        self._trail: TrailWriter | None = None
        self._open_lock = threading.RLock()
        self._instance_lock = threading.Lock()
        self._instance: Any = None
        self._dagster_home = os.environ.get("DAGSTER_HOME")
        self._rules: tuple[tuple[float, int], GateRules] | None = None
        self._analytics_rules: AnalyticsRules | None = None
        self._similar = SimilarWorkAdvice(self.analytics_rules)
        self._reports: queue.Queue[GateAnswer] = queue.Queue(maxsize=REPORT_BACKLOG)
        self._report_soon = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="dagster-reports", daemon=True)
        self._reporter.start()

    # -- the steps ------------------------------------------------------------------------

    def store(self) -> HubStore:
        """The store, opened once (building a resource per answer cost milliseconds)."""
        with self._open_lock:
            if self._store is None:
                self._store = HubStoreResource(database_url=self.settings.database_url).store()
            return self._store

    def trail(self) -> TrailWriter:
        """The one writer of this service's answers to the trail and the audit log."""
        with self._open_lock:
            if self._trail is None:
                self._trail = TrailWriter(self.store)
            return self._trail

    def rules(self) -> GateRules:
        """The gate rules, read again whenever the file changes (its mtime and size), else cached."""
        path = Path(self.settings.gate_rules_file or RULES_DIR / "gate.yaml")
        stat = path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if self._rules is None or self._rules[0] != stamp:
            self._rules = (stamp, load_gate_rules(path))
        return self._rules[1]

    def read_permit(self, ticket_no: str) -> dict[str, Any]:
        """The PTW's own record of the permit (its holds left out)."""
        try:
            with self.ptw.client() as client:
                reply = client.call("get_permit", id=ticket_no)
        except (TransientError, VendorRejected) as exc:
            raise PermitNotRead(f"permit {ticket_no} could not be read from the PTW: {exc}") from exc
        if not isinstance(reply, dict):
            raise PermitNotRead(f"the PTW's reply for permit {ticket_no} is not a permit record")
        return {k: v for k, v in reply.items() if k != "holds"}

    def refresh_eam(self, hub_store: HubStore, site: str, devices: list[str], eam: EamResource | None = None) -> str | None:
        """Ask the EAM now for the devices, whole, in one batched pull (through `eam`, or the
        check's own short-deadline EAM); what went wrong, if anything."""
        eam = eam or self.eam
        with eam.client() as client:
            # Every device whole (no change-only asks): the answer must not rest on older data.
            pulled = pull_site(hub_store, client, self.eam_mapping, site, set(devices), 0, eam.suspect_drop_share)
        return pulled.error

    def analytics_rules(self) -> AnalyticsRules:
        if self._analytics_rules is None:
            self._analytics_rules = load_analytics_rules(self.settings.analytics_rules_file)
        return self._analytics_rules

    # -- one check --------------------------------------------------------------------------

    def check(self, *, permit: dict[str, Any] | None = None, ticket_no: str | None = None) -> GateAnswer:
        """The answer for a permit given as the PTW's record or by ticket number; never raises."""
        now = datetime.now(timezone.utc)
        permit_id = ticket_no or self.ptw_mapping.record_key("permit", permit)
        permit_id = permit_id if isinstance(permit_id, str) and permit_id.strip() else UNREADABLE
        rules_version = "(unread)"
        try:
            rules = self.rules()
            rules_version = rules.version
            record = permit if permit is not None else self.read_permit(str(ticket_no))
            answer = self._decide(record, rules, now)
        except PermitNotRead as exc:
            log.error("gate check of %s: %s", permit_id, exc)
            # The PTW does not show the permit: nothing to hold, and no permit to add to the trail.
            answer = self._finish(_gate_error(permit_id, str(exc), rules_version, now), None, now, trail=False)
        except Exception as exc:  # the PTW follows the answer: anything unexpected blocks
            log.exception("gate check of %s failed inside the hub", permit_id)
            problem = f"internal error ({type(exc).__name__})"
            answer = self._finish(_gate_error(permit_id, problem, rules_version, now), None, now)
        return answer

    def _decide(self, record: dict[str, Any], rules: GateRules, now: datetime) -> GateAnswer:
        hub_store = self.store()
        try:
            mapped = self.ptw_mapping.inbound("permit", [record])
        except MappingAbort as exc:
            key = self.ptw_mapping.record_key("permit", record)
            rejected = [{"source_key": key or UNREADABLE, "reason": str(exc), "partial": {}}]
            mapped = None
        else:
            rejected = [{"source_key": r.source_key or UNREADABLE, "reason": r.reason, "partial": r.partial or {}} for r in mapped.quarantined]
            if mapped.quarantined:
                # Unreadable is recorded where every bad record goes, and the batch gate blocks it too.
                quarantine_rejects(hub_store, "ptw", self.ptw_mapping, mapped.quarantined)
        if rejected:
            decisions = invalid_permit_decisions(rejected, rules, now)
            if not decisions:
                return GateAnswer(rejected[0]["source_key"], NOT_GATED, now, rules.version)
            return self._finish(decisions[0], None, now, site=rejected[0]["partial"].get("site"))
        [permit] = mapped.records
        assert isinstance(permit, Permit)
        site_configured = permit.site in self.sites
        devices = list(dict.fromkeys(permit.device_ids))
        refreshed, eam_error, profiles = [], None, {}
        if site_configured and not rules.disabled and is_gated(permit.permit_type, permit.status, rules):
            with hub_store.transaction():  # one snapshot: the profiles read one state of the store
                answered = hub_store.lookup_times(EAM_ANSWERED, devices, site=permit.site)
                refreshed = [d for d in devices if d not in answered or now - answered[d] > rules.decision_data_age]
                if not refreshed:
                    profiles = clearance_profiles(hub_store, permit.site, devices, rules, now, answered)
            if refreshed:
                eam_error = self.refresh_eam(hub_store, permit.site, refreshed)
                now = datetime.now(timezone.utc)
                with hub_store.transaction():
                    profiles = clearance_profiles(hub_store, permit.site, devices, rules, now)
        decision = decide(permit, profiles, rules, now, site_configured=site_configured)
        if decision is None:
            answer = GateAnswer(permit.permit_id, NOT_GATED, now, rules.version, site=permit.site)
            answer.similar_work = self._similar.advice(hub_store, permit, now)
            return answer
        if eam_error is not None:
            # Never an allow on old data: each device asked about and not answered blocks.
            decision = with_reasons(decision, _eam_unreachable(permit.site, refreshed, eam_error, now))
        answer = self._finish(decision, profiles, now, site=permit.site if site_configured else None)
        answer.eam_refreshed, answer.eam_error = refreshed, eam_error
        answer.similar_work = self._similar.advice(hub_store, permit, now)
        if eam_error:
            log.warning("gate check of %s: the EAM did not answer for %s: %s", permit.permit_id, ", ".join(refreshed), eam_error)
        return answer

    def _finish(
        self,
        decision: GateDecision,
        profiles: dict[str, DeviceProfile] | None,
        now: datetime,
        site: str | None = None,
        trail: bool = True,
    ) -> GateAnswer:
        """Audit the decision, write its hold and report it; a failure of any of these never
        changes the answer (the decision was made; the batch gate writes the hold again).

        Without `trail`, or for a permit whose ticket number could not be read, only the
        audit log records the answer: the decision trail and the holds are kept for permits
        the PTW has."""
        trail = trail and decision.permit_id != UNREADABLE
        answer = GateAnswer(
            permit_id=decision.permit_id,
            decision=decision.decision,
            evaluated_at=decision.evaluated_at,
            rule_version=decision.rule_version,
            reasons=list(decision.reasons),
            devices=[self._device(p, now) for p in (profiles or {}).values()],
            site=site,
        )
        decision_id, fingerprint = str(uuid.uuid4()), decision_fingerprint(decision)
        hub_store = None
        body = {
            "decision_id": decision_id,
            "fingerprint": fingerprint,
            "decision": decision.decision,
            "evaluated_at": iso(decision.evaluated_at),
            "in_decision_trail": trail,
        }
        if not trail:
            body["reasons"] = [r.model_dump(mode="json") for r in decision.reasons]
        try:
            hub_store = self.store()
            self.trail().append(decision, body, trail=trail)
            answer.decision_id = decision_id
        except Exception:
            log.exception("gate check of %s: the decision could not be audited", decision.permit_id)
        if hub_store is not None and trail:
            try:
                # Most answers repeat a decision whose hold is at the PTW already: no client, no write.
                if hub_store.holds_needing_write({decision.permit_id: fingerprint}):
                    written = write_holds(
                        hub_store, self.ptw.client(), self.ptw_mapping, self.ptw.hold_source, [decision], reconcile=False
                    )
                    answer.hold_error = "; ".join(written.failed) or None
            except Exception as exc:
                answer.hold_error = f"{type(exc).__name__}: {exc}"
            if answer.hold_error:
                log.error("gate check of %s: the PTW hold was not written: %s", decision.permit_id, answer.hold_error)
        self.report(answer)
        return answer

    @staticmethod
    def _device(profile: DeviceProfile, now: datetime) -> dict[str, Any]:
        as_of = profile.data_as_of
        return {
            "device_id": profile.device_id,
            "data_as_of": iso(as_of) if as_of else None,
            "data_age_s": round((now - as_of).total_seconds(), 3) if as_of else None,
        }

    # -- Dagster ------------------------------------------------------------------------------

    def dagster_instance(self):
        """The Dagster instance of the DAGSTER_HOME this service started with, opened once; None
        when there was none, or when DAGSTER_HOME names another home now (a service never
        reports into a home it was not started for)."""
        if not self._dagster_home or os.environ.get("DAGSTER_HOME") != self._dagster_home:
            return None
        with self._instance_lock:
            if self._instance is None:
                from dagster import DagsterInstance

                from hub import dagster_sqlite

                dagster_sqlite.install()  # each report is one event: its engines are kept
                self._instance = DagsterInstance.get()
            return self._instance

    def report(self, answer: GateAnswer) -> None:
        """Hand the answer to the reporter thread: the caller does not wait for Dagster's storage.
        A full backlog reports the answer here instead, so none is dropped."""
        try:
            self._reports.put_nowait(answer)
        except queue.Full:
            self._report_now([answer])

    def _report_loop(self) -> None:
        """Report what is waiting, every `REPORT_EVERY_S`: a permit asked about many times in that
        time is reported once, with its latest answer and how many answers it stands for."""
        while True:
            batch = [self._reports.get()]
            self._report_soon.wait(REPORT_EVERY_S)
            while True:
                try:
                    batch.append(self._reports.get_nowait())
                except queue.Empty:
                    break
            self._report_now(batch)
            for _ in batch:
                self._reports.task_done()

    def flush_reports(self, wait_s: float = 10.0) -> bool:
        """Report what is waiting now, not at the next interval (a stopping service); whether
        all of it was reported within `wait_s`."""
        self._report_soon.set()
        deadline = time.monotonic() + wait_s
        while self._reports.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._reports.unfinished_tasks

    def _report_now(self, answers: list[GateAnswer]) -> None:
        """One event per site: Dagster's event log takes a few per second, not hundreds."""
        by_site: dict[str | None, dict[str, tuple[GateAnswer, int]]] = {}
        for answer in answers:
            latest = by_site.setdefault(answer.site, {})
            seen = latest.get(answer.permit_id, (answer, 0))[1]
            latest[answer.permit_id] = (answer, seen + 1)
        for site, latest in by_site.items():
            # Blocks first, so a capped table never hides one behind allows.
            self._materialize(site, sorted(latest.values(), key=lambda pair: (pair[0].decision != "block", pair[0].permit_id)))

    def _materialize(self, site: str | None, answers: list[tuple[GateAnswer, int]]) -> None:
        """The site's latest answer per permit as one runless materialization of the gate asset,
        with a row per permit; failing to report is logged only."""
        try:
            instance = self.dagster_instance()
            if instance is None:
                return
            from dagster import AssetMaterialization, MetadataValue, TableColumn, TableRecord, TableSchema

            rows = [
                TableRecord(
                    {
                        "permit_id": answer.permit_id,
                        "decision": answer.decision,
                        "reasons": ", ".join(sorted({r.code for r in answer.reasons})) or "none",
                        "decision_id": answer.decision_id or "none",
                        "rule_version": answer.rule_version,
                        "eam_refreshed": ", ".join(answer.eam_refreshed) or "none",
                        "eam_error": answer.eam_error or "none",
                        "hold_error": answer.hold_error or "none",
                        "answers": count,
                    }
                )
                for answer, count in answers[:REPORT_ROWS]
            ]
            columns = [TableColumn(name, "int" if name == "answers" else "string") for name in rows[0].data]
            blocked = [answer.permit_id for answer, _ in answers if answer.decision == "block"]
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=GATE_ASSET,
                    partition=site,
                    description=f"gate checks of {len(answers)} permits by the gate-check service",
                    metadata={
                        "source": "gate-check service",
                        "permits_decided": len(answers),
                        "answers": sum(count for _, count in answers),
                        "blocked_permit_ids": ", ".join(blocked[:50]) or "none",
                        "decisions": MetadataValue.table(rows, TableSchema(columns)),
                    },
                )
            )
        except Exception:
            log.exception("gate checks at site %s: the answers could not be reported to Dagster", site)
