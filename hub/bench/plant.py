"""The plant a bench runs on: generated once per scale and seed, and a changed copy for the incremental sync.

The generator lives in `hub.synthetic_plant` and is imported only when needed, so a bench on
a given fixtures folder works without it.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, time, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.bench.scales import Scale

PLANT_TZ = ZoneInfo("Asia/Shanghai")
CHANGED_FRACTION = 0.01
# Before today, so that every stamp of the generated plant is older than a change made now: an
# incremental pull then lists the changes, and only them.
ANCHOR = date(2026, 11, 1)
# Part of a cached plant's folder name: raised when the generator writes what older plants lack
# (2: MES quality records and work-order report dates), so an older plant is not reused.
PLANT_FORMAT = 2


class PlantUnavailable(RuntimeError):
    """No plant to run on: the generator is not installed and no fixtures were given."""


def generated_plant(scale: Scale, seed: int, workdir: Path) -> Path:
    """The plant for this scale and seed, reused from `workdir`: the large one takes minutes to generate."""
    folder = workdir / "plants" / f"{scale.name}-seed{seed}-{ANCHOR:%Y%m%d}-v{PLANT_FORMAT}"
    if (folder / "manifest.json").exists():
        return folder
    try:
        from hub.synthetic_plant import generate_plant
    except ImportError:
        raise PlantUnavailable("the plant generator (hub.synthetic_plant) is not installed; pass --fixtures DIR") from None
    partial = folder.with_name(folder.name + ".partial")  # a killed generation is never mistaken for a plant
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    generate_plant(partial, seed=seed, anchor=ANCHOR, **scale.plant_size())
    partial.rename(folder)
    return folder


class PlantUnchangeable(RuntimeError):
    """The incremental sync has no changed plant to run on; the message says why."""


def changed_plant(src: Path, dst: Path, seed: int) -> None:
    """Copy `src` to `dst` with 1 % of its permits and work orders changed."""
    try:
        from hub.synthetic_plant import change_plant
    except ImportError:
        raise PlantUnchangeable("the plant generator (hub.synthetic_plant) is not installed") from None
    manifest = src / "manifest.json"
    if not manifest.exists():
        raise PlantUnchangeable(f"{src} has no manifest.json, so it was not made by the generator and cannot be changed")
    shutil.rmtree(dst, ignore_errors=True)
    change_plant(src, dst, fraction=CHANGED_FRACTION, seed=seed, now=_change_time(manifest))


def _change_time(manifest: Path) -> datetime:
    """Now, or the generator's anchor if the plant's clock runs ahead of ours.

    Every stamp of a generated plant lies before its anchor (plant local midnight), and a
    change must be stamped after all of them: the hub's cursor is the newest stamp it has
    seen, so an earlier change would never be listed and the incremental sync would measure nothing.
    """
    anchor = date.fromisoformat(json.loads(manifest.read_text(encoding="utf-8"))["arguments"]["anchor"])
    plant_midnight = datetime.combine(anchor, time(), tzinfo=PLANT_TZ)
    return max(datetime.now(timezone.utc), plant_midnight.astimezone(timezone.utc))


def cost_rules_file(plant: Path) -> Path | None:
    """A generated plant brings cost rules for its own cost centres; the shipped fixtures use the packaged ones."""
    rules = plant / "rules" / "costs.yaml"
    return rules.resolve() if rules.exists() else None


def plant_sites(plant: Path) -> list[str]:
    """The plant's sites, one partition each: from the generator's manifest, else from the permits."""
    manifest = plant / "manifest.json"
    if manifest.exists():
        return [site["code"] for site in json.loads(manifest.read_text(encoding="utf-8"))["sites"]]
    permits = json.loads((plant / "ptw" / "permits.json").read_text(encoding="utf-8"))
    return sorted({str(p.get("siteCode", "")).strip().upper() for p in permits} - {""})
