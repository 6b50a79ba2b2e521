"""`hub bench --live`: the gate in time, on a generated plant with the service and the daemon running.

1. The plant is synced once (a full sync in a child process), so the store holds what a plant's
   hub holds before it goes live.
2. **Service**: the gate-check service under a fixed request rate (open loop: requests are sent
   on schedule whether or not earlier ones were answered). One check in `UNSEEN_EVERY` is for a
   permit submitted to the PTW at that moment on equipment the hub never pulled, so the service
   must ask the EAM. Answers are split by whether the service asked the EAM (`eam_refreshed` in
   the answer) or answered from fresh data.
3. **Stream**: a seeded stream of plant events for a fixed period, against devices no other
   permit names (so the stream's effects are its own): permits created, submitted, approved and
   started through the PTW, whose pre-approval hook asks the service; work orders opened and
   closed, isolations applied and released, equipment taken out of service and back. For each
   event that blocks an approved or active permit, the latency to the PTW's block hold.
4. **Too late**: approvals and starts the PTW accepted while the EAM had shown a blocking
   condition on the permit's equipment for more than `TOO_LATE_S`.
5. **False allows**: after the stream settles, every permit the stream created is decided
   again by the pure logic (`hub.logic.gate.decide`) on the mocks' final state, read fresh; a
   permit that must be blocked and is not held at the PTW is a false allow.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from hub.bench.databases import DEFAULT_PG_URL, FreshDatabases
from hub.bench.loadclient import LoadConnection
from hub.bench.mocks_process import MocksProcess, server_root
from hub.bench.plant import cost_rules_file, generated_plant, plant_sites
from hub.bench.run import BenchFailed, Environment, machine_facts, run_child
from hub.bench.scales import Scale
from hub.mappings.compile import TRANSFORMS
from hub.live import LiveGate

#: An approval while the EAM has shown a block for longer than this is too late.
TOO_LATE_S = 30.0
PLANT_TZ = ZoneInfo("Asia/Shanghai")
#: Gate checks outstanding at once at most (a PTW's connection pool).
IN_FLIGHT = 64
#: After the load period, how long requests still due are sent before the rest are given up.
LOAD_GRACE_S = 10.0
#: Devices the stream works on, per site it uses.
POOL_PER_SITE = 40
STREAM_SITES = 2
#: One check in this many (1/s at 200/s) is for a permit just submitted on equipment the hub
#: holds no data for. A plant submits a few permits a minute; at one in 50 (4/s) the pulls, the
#: new permits' holds and the sensor's re-gates of them took the 2-core machine past what the
#: service, the mocks and the daemon could serve together, and every answer queued for seconds.
UNSEEN_EVERY = 200
#: How long the load waits for the service to have fresh data, as a deployment waits for readiness
#: (keep-fresh spreads its pulls over half of decision_data_age); past it the load starts anyway.
WARM_UP_S = 90.0


@dataclass(frozen=True)
class LiveOptions:
    scale: Scale
    seed: int = 1
    workdir: Path = Path(".hub/bench")
    rate: float = 200.0  # gate checks per second
    load_s: float = 60.0
    stream_s: float = 120.0
    events_per_s: float = 1.0
    settle_s: float = 40.0  # after the stream: time for the last changes to reach the PTW
    workers: int = 2  # gate-check server processes
    pg_url: str = DEFAULT_PG_URL


@dataclass
class Percentiles:
    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> Percentiles:
        if not seconds:
            return cls(0, None, None, None)
        ordered = sorted(seconds)

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

        return cls(len(ordered), at(0.50), at(0.99), round(ordered[-1] * 1000, 1))


@dataclass
class LiveReport:
    machine: dict
    run: dict
    service: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False), encoding="utf-8")


# ------------------------------------------------------------------------------- the service


async def _load(
    url: str, token: str, bodies: Callable[[int], dict | Callable[[], Awaitable[dict]]], rate: float, duration_s: float
) -> tuple[list[tuple[float, int, bool]], float]:
    """(latency s, HTTP status, whether the EAM was asked) of each request, and the seconds from
    the first request's due time to the last answer.

    Requests are due on a fixed schedule; at most `IN_FLIGHT` are outstanding. A request sent
    late because the service is behind is timed from when it was due, so a slow service shows
    as slow (no coordinated omission) and the client never queues more than it can handle. A
    body given as a coroutine function is made first (a permit submitted to the PTW), and its
    check timed from when it was made."""
    results: list[tuple[float, int, bool]] = []
    total = int(rate * duration_s)
    start = last = time.perf_counter()
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal last
        connection = LoadConnection(url, token)
        try:
            for n in counter:
                if time.perf_counter() - start > duration_s + LOAD_GRACE_S:
                    return  # the service is that far behind: the rest are never sent (counted as errors)
                due = start + n / rate
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                body = bodies(n)
                if callable(body):
                    body, due = await body(), time.perf_counter()
                status, body = await connection.post(body)
                # Compact JSON (the service's): an empty list when the EAM was not asked.
                asked = status == 200 and b'"eam_refreshed":[]' not in body
                last = time.perf_counter()
                results.append((last - due, status, asked))
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return results, last - start


def measure_service(live: LiveGate, ptw: str, permits: list[dict], unseen: list[tuple[str, str]], options: LiveOptions) -> dict:
    """The service at `options.rate` for `options.load_s`: most requests for a small set of
    permits (fresh data after their first check), a fifth for other gated permits, and one in
    `UNSEEN_EVERY` for a permit submitted to the PTW at that moment on a device no permit named
    before (`unseen`, (site, device), each once) and checked at once, as a PTW does that approves
    on submission: the hub has no EAM data for it, so these are the checks that ask the EAM."""
    rng = random.Random(options.seed)
    hot, cold = permits[:20], permits[20:]
    devices = iter(unseen)

    def bodies(n: int) -> dict | Callable[[], Awaitable[dict]]:
        # The first after the hot permits' first checks (so a short load has one too).
        if n % UNSEEN_EVERY == 25 and (device := next(devices, None)) is not None:
            return lambda: _submitted(ptw, *device)
        return {"permit": hot[n % len(hot)] if n % 5 or not cold else cold[rng.randrange(len(cold))]}

    results, span_s = asyncio.run(_load(live.url, live.token, bodies, options.rate, options.load_s))
    ok = [r for r in results if r[1] == 200]
    due = int(options.rate * options.load_s)
    return {
        "rate_per_s": options.rate,
        "duration_s": options.load_s,
        "requests_due": due,
        "requests": len(results),
        "not_sent": due - len(results),
        # Over the time the answers took (not the load plus its grace, which hid a service
        # that kept up: 12,000 answers in 60 s printed as 171/s).
        "answered_per_s": round(len(ok) / span_s, 1) if span_s > 0 else 0.0,
        "errors": len(results) - len(ok),
        "all": asdict(Percentiles.of([r[0] for r in ok])),
        "fresh": asdict(Percentiles.of([r[0] for r in ok if not r[2]])),
        "eam_asked": asdict(Percentiles.of([r[0] for r in ok if r[2]])),
    }


# -------------------------------------------------------------------------------- the stream


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _new_permit(site: str, device: str) -> dict:
    """A work-at-height permit on one device, from now for eight hours, as the PTW's API takes it."""
    now = datetime.now(PLANT_TZ)
    return {
        "ticketType": "GC", "siteCode": site, "workshop": "bench", "equipmentCodes": [device],
        "applicant": "bench", "guardian": "bench",
        "planStartTime": now.strftime("%Y-%m-%d %H:%M:%S"),
        "planEndTime": (now + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S"),
    }


@dataclass
class Device:
    site: str
    number: str
    blocked_since: float | None = None  # wall-clock time the EAM first showed a block
    condition: tuple[str, str] | None = None  # (kind, work order) of the block
    permits: list[str] = field(default_factory=list)  # the stream's approved or active permits on it


@dataclass
class Stream:
    """The stream's plant: its devices, permits, and what it measured."""

    ptw: str
    eam: str
    rng: random.Random
    devices: list[Device]
    admin: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    created: list[tuple[str, Device]] = field(default_factory=list)
    awaiting: dict[str, float] = field(default_factory=dict)  # permit -> when its block began
    latencies: list[float] = field(default_factory=list)
    accepted: list[dict] = field(default_factory=list)
    refused: int = 0
    cleared_before_hold: int = 0
    too_late: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1

    # -- permits through the PTW, its hook asking the service --------------------------------
    def new_permit(self, device: Device) -> None:
        created = self.admin.post(f"{self.ptw}/api/v1/permits", json=_new_permit(device.site, device.number))
        created.raise_for_status()
        ticket = created.json()["ticketNo"]
        self.created.append((ticket, device))
        self.count("permit_submitted")
        for action in ("approve", "start"):
            at = time.time()
            reply = self.admin.post(f"{self.ptw}/api/v1/permits/{ticket}/{action}")
            if reply.status_code != 200:
                self.refused += 1
                self.count(f"permit_{action}_refused")
                return
            self.count(f"permit_{action}d" if action == "approve" else "permit_started")
            self.accepted.append({"permit": ticket, "action": action, "at": at})
            if device.blocked_since is not None and at - device.blocked_since > TOO_LATE_S:
                self.too_late.append(ticket)
        with self.lock:
            device.permits.append(ticket)

    # -- EAM changes ------------------------------------------------------------------------
    def block(self, device: Device) -> None:
        kind = self.rng.choice(["work_order", "work_order", "isolation", "status"])
        self.counter += 1
        wonum = f"WO-LIVE-{self.counter:05d}"
        started = datetime.now(PLANT_TZ).replace(microsecond=0) - timedelta(hours=1)
        if kind == "status":
            reply = self.admin.patch(f"{self.eam}/_admin/assets/{device.site}/{device.number}", json={"status": "NOT READY"})
        else:
            # An isolation is applied on work that is already finished: the lock is what blocks.
            status = "INPRG" if kind == "work_order" else "COMP"
            reply = self.admin.post(f"{self.eam}/_admin/workorders", json={
                "wonum": wonum, "assetnum": device.number, "siteid": device.site, "worktype": "CM", "status": status,
                "status_maxvalue": status, "schedstart": started.isoformat(),
                **({"isolationstate": "APPLIED"} if kind == "isolation" else {}),
            })
        reply.raise_for_status()
        at = time.time()
        self.count(f"blocked_by_{kind}")
        with self.lock:
            device.blocked_since, device.condition = at, (kind, wonum)
            for permit in device.permits:
                self.awaiting.setdefault(permit, at)

    def clear(self, device: Device) -> None:
        kind, wonum = device.condition or ("", "")
        if kind == "status":
            reply = self.admin.patch(f"{self.eam}/_admin/assets/{device.site}/{device.number}", json={"status": "OPERATING"})
        elif kind == "isolation":
            reply = self.admin.patch(f"{self.eam}/_admin/workorders/{device.site}/{wonum}", json={"isolationstate": "RELEASED"})
        else:
            reply = self.admin.patch(
                f"{self.eam}/_admin/workorders/{device.site}/{wonum}", json={"status": "COMP", "status_maxvalue": "COMP"}
            )
        reply.raise_for_status()
        self.count(f"cleared_{kind}")
        with self.lock:
            device.blocked_since = device.condition = None
            for permit in device.permits:
                # The block was withdrawn before the hub acted on it: no hold is owed any more.
                if self.awaiting.pop(permit, None) is not None:
                    self.cleared_before_hold += 1
            device.permits.clear()  # suspended work stays suspended: nothing more to await on it

    def step(self) -> None:
        in_use = [d for d in self.devices if d.permits and d.blocked_since is None]
        blocked = [d for d in self.devices if d.blocked_since is not None]
        free = [d for d in self.devices if not d.permits and d.blocked_since is None]
        roll = self.rng.random()
        if roll < 0.35 and free:
            self.new_permit(self.rng.choice(free))
        elif roll < 0.65 and in_use:
            self.block(self.rng.choice(in_use))
        elif roll < 0.85 and blocked:
            self.clear(self.rng.choice(blocked))
        elif blocked:
            self.new_permit(self.rng.choice(blocked))  # the hook must refuse it
        elif free:
            self.new_permit(self.rng.choice(free))

    def watch(self, stop: threading.Event) -> None:
        """Until `stop`: for each permit awaiting its block, the time the PTW's BLOCK hold landed."""
        while not stop.wait(0.5):
            with self.lock:
                waiting = dict(self.awaiting)
            for permit, since in waiting.items():
                try:
                    holds = self.admin.get(f"{self.ptw}/api/v1/permits/{permit}").json().get("holds", [])
                except (httpx.HTTPError, ValueError):
                    continue
                landed = [_utc(h["updatedAt"]).timestamp() for h in holds if h.get("action") == "BLOCK"]
                landed = [t for t in landed if t >= since - 1.0]  # updatedAt has whole seconds
                if landed:
                    with self.lock:
                        self.awaiting.pop(permit, None)
                    self.latencies.append(max(0.0, min(landed) - since))


def _site_eam(mapping, site: str, assets: list, orders: list, now: datetime):
    """The site's EAM records as the pure logic takes them, answered `now`; a record the mapping
    cannot read makes its device invalid, as in the hub (unreadable is not clear)."""
    from hub.logic.clearance import SiteEam

    equipment, records = mapping.inbound("equipment", assets), mapping.inbound("maintenance_record", orders)
    invalid: dict[str, list[str]] = {}
    for item in [*equipment.quarantined, *records.quarantined]:
        partial = item.partial or {}
        if partial.get("device_id") and partial.get("site", site) == site:
            invalid.setdefault(partial["device_id"], []).append(item.reason)
    known = {e.device_id: e for e in equipment.records}
    return SiteEam(site, known, records.records, {d: now for d in known}, invalid)


#: A device number as the hub matches it: PTW records write the same device as `HZ-P-301`,
#: `hz-p-301` or ` HZ-P-301 `.
_id = TRANSFORMS["id"]


def _named_devices(plant: Path) -> set[tuple[str, str]]:
    """(site, device) of every device a permit of the plant names, in the form the hub matches."""
    permits = json.loads((plant / "ptw/permits.json").read_text(encoding="utf-8"))
    return {(str(p.get("siteCode", "")).strip().upper(), _id(d)) for p in permits for d in p.get("equipmentCodes") or []}


def _pool(plant: Path, sites: list[str], rules, seed: int, taken: set[tuple[str, str]]) -> list[Device]:
    """Devices in service with nothing open, isolated or falling due in the next two days (by
    the pure logic, on the plant's own records), that no permit names and not `taken` (site,
    device) by the load: what the stream may change freely."""
    from hub.logic.clearance import build_profiles, reasons_at
    from hub.mappings.engine import load_mapping

    assets = json.loads((plant / "eam/assets.json").read_text(encoding="utf-8"))
    named = _named_devices(plant)
    rng = random.Random(seed)
    chosen = {}
    for site in sites:
        free = [
            a for a in assets
            if a.get("siteid") == site and a.get("status") == "OPERATING" and (site, _id(a["assetnum"])) not in named and (site, a["assetnum"]) not in taken
        ]
        chosen[site] = rng.sample(free, min(len(free), POOL_PER_SITE * 2))
    wanted = {(a["siteid"], a["assetnum"]) for site in chosen.values() for a in site}
    orders = [w for w in json.loads((plant / "eam/workorders.json").read_text(encoding="utf-8")) if (w.get("siteid"), w.get("assetnum")) in wanted]
    mapping = load_mapping(Path(__file__).resolve().parents[1] / "mappings" / "eam.yaml")
    now = datetime.now(timezone.utc)
    pool = []
    for site, site_assets in chosen.items():
        eam = _site_eam(mapping, site, site_assets, [w for w in orders if w["siteid"] == site], now)
        profiles = build_profiles(sorted(eam.equipment), eam, rules, now)
        # Clear for the stream's permits: nothing blocks from now until well after their work ends.
        horizon = now + timedelta(hours=48)
        clear = [d for d, p in profiles.items() if p.known and not reasons_at(p, now, horizon, rules, now)]
        pool += [Device(site, d) for d in clear[:POOL_PER_SITE]]
    return pool


def false_allows(stream: Stream, env: dict[str, str], rules) -> tuple[int, list[str], dict[str, list[str]]]:
    """(permits decided, false allows, needless blocks with the reason codes of their holds): the
    pure logic on the mocks' final state."""
    from hub.logic.clearance import build_profiles
    from hub.logic.gate import decide
    from hub.mappings.engine import load_mapping
    from hub.resources import resources_from_settings
    from hub.settings import HubSettings

    with _environment(env):
        resources = resources_from_settings(HubSettings())
        eam = resources["eam"].process_config_and_initialize()
        ptw = resources["ptw"].process_config_and_initialize()
    eam_mapping, ptw_mapping = load_mapping(eam.mapping), load_mapping(ptw.mapping)
    now = datetime.now(timezone.utc)
    missed, needless, decided = [], {}, 0
    for site in sorted({d.site for d in stream.devices}):
        devices = sorted({d.number for d in stream.devices if d.site == site})
        assets, orders = [], []
        with eam.client() as client:
            for page in client.pages("maintenance", ids=devices, site=site):
                assets += page.get("equipment", [])
                orders += page.get("maintenance_record", [])
        profiles = build_profiles(devices, _site_eam(eam_mapping, site, assets, orders, now), rules, now)
        for ticket, device in stream.created:
            if device.site != site:
                continue
            record = stream.admin.get(f"{stream.ptw}/api/v1/permits/{ticket}").json()
            holds = record.pop("holds", [])
            [permit] = ptw_mapping.inbound("permit", [record]).records
            decision = decide(permit, profiles, rules, now)
            if decision is None:
                continue  # no longer gated (suspended, closed)
            decided += 1
            blocks = [h for h in holds if h.get("action") == "BLOCK"]
            if decision.decision == "block" and not blocks:
                missed.append(ticket)
            if decision.decision == "allow" and blocks:
                needless[ticket] = sorted({r.get("code", "?") for h in blocks for r in h.get("reasons", [])})
    return decided, missed, needless


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """This process's HUB_* settings as `env` has them, for as long as the block runs."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("HUB_")}
    for key in saved:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith("HUB_")})
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("HUB_")]:
            del os.environ[key]
        os.environ.update(saved)


def measure_stream(
    live: LiveGate, mocks: MocksProcess, plant: Path, sites: list[str], env: dict[str, str], options: LiveOptions, progress,
    taken: set[tuple[str, str]],
) -> dict:
    from hub.logic.rules import load_gate_rules

    rules = load_gate_rules(None)
    pool = _pool(plant, sites[:STREAM_SITES], rules, options.seed, taken)
    if not pool:
        raise BenchFailed("the plant has no device the stream could use (in service, clear and named by no permit)")
    stream = Stream(server_root(mocks.urls["ptw"]), server_root(mocks.urls["eam"]), random.Random(options.seed), pool)
    stop = threading.Event()
    watcher = threading.Thread(target=stream.watch, args=(stop,), daemon=True)
    watcher.start()
    try:
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < options.stream_s:
            delay = start + n / options.events_per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            stream.step()
            n += 1
        progress(f"stream done ({n} events); waiting {options.settle_s:g} s for the last holds")
        deadline = time.perf_counter() + options.settle_s
        while stream.awaiting and time.perf_counter() < deadline:
            time.sleep(0.5)
    finally:
        stop.set()
        watcher.join()
    decided, missed, needless = false_allows(stream, env, rules)
    latency = Percentiles.of(stream.latencies)
    return {
        "duration_s": options.stream_s,
        "events": dict(sorted(stream.events.items())),
        "pool_devices": len(pool),
        "permits_created": len(stream.created),
        "approvals_and_starts_accepted": len(stream.accepted),
        "refused_by_the_hook": stream.refused,
        "blocks_awaited": latency.count + len(stream.awaiting) + stream.cleared_before_hold,
        "hold_latency_s": {
            "count": latency.count,
            "p50": latency.p50_ms and round(latency.p50_ms / 1000, 2),
            "p99": latency.p99_ms and round(latency.p99_ms / 1000, 2),
            "max": latency.max_ms and round(latency.max_ms / 1000, 2),
        },
        "holds_not_landed": sorted(stream.awaiting),
        "blocks_withdrawn_before_their_hold": stream.cleared_before_hold,
        "too_late": len(stream.too_late),
        "too_late_permits": stream.too_late,
        "permits_checked_for_false_allows": decided,
        "false_allows": len(missed),
        "false_allow_permits": missed,
        "blocked_though_clear": len(needless),
        "blocked_though_clear_permits": needless,
    }


# ----------------------------------------------------------------------------------- the run


def run_live_bench(options: LiveOptions, progress: Callable[[str], None] = print) -> LiveReport:
    scale = options.scale
    workdir = options.workdir.resolve()
    progress(f"generating the {scale.name} plant (seed {options.seed}), once per scale and seed")
    plant = generated_plant(scale, options.seed, workdir)
    started = datetime.now(timezone.utc)
    folder = workdir / "runs" / f"live-{scale.name}-{started:%Y%m%dT%H%M%S}"
    folder.mkdir(parents=True)
    home = folder / "dagster_home"
    home.mkdir()
    from hub.instance import DAGSTER_YAML

    (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    sites = plant_sites(plant)
    report = LiveReport(
        machine=machine_facts(),
        run={"scale": scale.name, "seed": options.seed, "date": started.isoformat(timespec="seconds"), "plant": str(plant)},
    )
    with FreshDatabases("sqlite", folder, options.pg_url) as databases:
        with MocksProcess(plant, folder / "mock_state", folder / "mocks.log") as mocks:
            mocks.reset()
            env = Environment(home, cost_rules_file(plant), None, sites).for_phase(mocks.urls, databases.store_url("hub"))
            progress("full sync (the store a live hub starts from)")
            full = run_child(["hub", "--executor", "in_process"], env, folder, "hub_full")
            report.run["full_sync_s"] = round(full.wall_s, 1)
            with LiveGate(env, folder, mocks.urls["ptw"], requests_per_second=options.rate * 2, workers=options.workers) as live:
                permits = _gated_records(plant, sites, options.seed)
                due = int(options.rate * options.load_s)
                unseen = _unseen_equipment(plant, sites, due // UNSEEN_EVERY + 1, options.seed)
                progress("waiting for the service's EAM data to be fresh (its first keep-fresh passes)")
                warm_up = live.await_fresh(WARM_UP_S)
                progress(f"gate-check service: {options.rate:g} requests/s for {options.load_s:g} s")
                report.service = {**measure_service(live, server_root(mocks.urls["ptw"]), permits, unseen, options), "warm_up": warm_up}
                progress(f"plant events for {options.stream_s:g} s, sensors and daemon running")
                report.stream = measure_stream(live, mocks, plant, sites, env, options, progress, set(unseen))
    return report


def _gated_records(plant: Path, sites: list[str], seed: int) -> list[dict]:
    """The PTW's own records of gated permits (work at height, submitted to active), shuffled."""
    records = [
        {k: v for k, v in p.items() if k != "holds"}
        for p in json.loads((plant / "ptw/permits.json").read_text(encoding="utf-8"))
        if p.get("ticketType") == "GC" and p.get("state") in ("SUBMITTED", "APPROVED", "IN_PROGRESS") and p.get("siteCode") in sites
    ]
    random.Random(seed).shuffle(records)
    return records


def _unseen_equipment(plant: Path, sites: list[str], count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (site, device) in service that no permit of the plant names: the hub never pulled them."""
    named = _named_devices(plant)
    assets = json.loads((plant / "eam/assets.json").read_text(encoding="utf-8"))
    free = [
        (a["siteid"], a["assetnum"]) for a in assets
        if a.get("siteid") in sites and a.get("status") == "OPERATING" and (a["siteid"], _id(a["assetnum"])) not in named
    ]
    return random.Random(seed).sample(free, min(count, len(free)))


async def _submitted(ptw: str, site: str, device: str) -> dict:
    """A permit submitted to the PTW on the device, and the PTW's record of it, as its hook sends it."""
    async with httpx.AsyncClient(timeout=10) as client:
        created = (await client.post(f"{ptw}/api/v1/permits", json=_new_permit(site, device))).raise_for_status()
        record = (await client.get(f"{ptw}/api/v1/permits/{created.json()['ticketNo']}")).raise_for_status().json()
    return {"permit": {k: v for k, v in record.items() if k != "holds"}}


def print_live_report(report: LiveReport, console) -> None:
    from rich.table import Table

    service, stream = report.service, report.stream
    table = Table(title=f"hub bench --live ({report.run['scale']}, seed {report.run['seed']})")
    for column in ("figure", "value", "target"):
        table.add_column(column)

    def ms(group: dict) -> str:
        return f"p50 {group['p50_ms']} ms, p99 {group['p99_ms']} ms, max {group['max_ms']} ms ({group['count']:,})"

    warm = service.get("warm_up", {})
    table.add_row(
        "warm-up before the load",
        f"{warm.get('waited_s', 0)} s: {warm.get('status', 'unanswered')}, "
        f"{warm.get('stale_devices', '?')} of {warm.get('gated_devices', '?')} gated devices stale",
        "",
    )
    table.add_row(
        "gate checks",
        f"{service['requests_due']:,} due at {service['rate_per_s']:g}/s: {service['requests']:,} sent, "
        f"{service['errors']} errors, {service['not_sent']:,} never sent; {service['answered_per_s']}/s answered",
        "0 errors",
    )
    table.add_row("answers from fresh data", ms(service["fresh"]), "p99 <= 50 ms")
    table.add_row("answers that asked the EAM", ms(service["eam_asked"]), "p99 <= 500 ms")
    latency = stream["hold_latency_s"]
    table.add_row(
        "event to hold",
        f"p50 {latency['p50']} s, p99 {latency['p99']} s, max {latency['max']} s ({latency['count']} holds)",
        "p50 <= 15 s, p99 <= 30 s",
    )
    table.add_row(
        "holds not landed", f"{len(stream['holds_not_landed'])} (withdrawn first: {stream['blocks_withdrawn_before_their_hold']})", "0"
    )
    table.add_row("too late", str(stream["too_late"]), "0")
    table.add_row("false allows", f"{stream['false_allows']} of {stream['permits_checked_for_false_allows']}", "0")
    table.add_row("held though the logic allows", str(stream["blocked_though_clear"]), "")
    table.add_row("refused by the hook", str(stream["refused_by_the_hook"]), "")
    console.print(table)
    console.print(f"events: {stream['events']}", markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
