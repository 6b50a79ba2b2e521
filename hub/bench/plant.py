"""The plant a bench runs on: generated once per scale and seed, and a changed copy for the incremental sync.

The generator lives in `hub.synthetic_plant` and is imported only when needed, so a bench on
a given fixtures folder works without it.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.bench.scales import Scale

PLANT_TZ = ZoneInfo("Asia/Shanghai")
CHANGED_FRACTION = 0.01


class PlantUnavailable(RuntimeError):
    """No plant to run on: the generator is not installed and no fixtures were given."""


def generated_plant(scale: Scale, seed: int, workdir: Path) -> Path:
    """The plant for this scale and seed, reused from `workdir`: the large one takes minutes to generate."""
    folder = workdir / "plants" / f"{scale.name}-seed{seed}"
    if (folder / "manifest.json").exists():
        return folder
    try:
        from hub.synthetic_plant import generate_plant
    except ImportError:
        raise PlantUnavailable("the plant generator (hub.synthetic_plant) is not installed; pass --fixtures DIR") from None
    partial = folder.with_name(folder.name + ".partial")  # a killed generation is never mistaken for a plant
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    generate_plant(partial, seed=seed, **scale.plant_size())
    partial.rename(folder)
    return folder


def changed_plant(src: Path, dst: Path, seed: int) -> bool:
    """Copy `src` to `dst` with 1 % of permits and work orders changed; False when the generator is missing."""
    try:
        from hub.synthetic_plant import change_plant
    except ImportError:
        return False
    shutil.rmtree(dst, ignore_errors=True)
    change_plant(src, dst, fraction=CHANGED_FRACTION, seed=seed, now=_change_time(src))
    return True


def _change_time(plant: Path) -> datetime:
    """Now, or just after the newest permit update if the plant's clock runs ahead of ours.

    The hub's permit cursor is the newest update it has seen; a change stamped before it
    would never be listed, and the incremental sync would measure nothing.
    """
    now = datetime.now(timezone.utc)
    stamps = [p.get("updateTime") for p in json.loads((plant / "ptw" / "permits.json").read_text(encoding="utf-8"))]
    newest = None
    for stamp in stamps:
        try:
            moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=PLANT_TZ)
        except (TypeError, ValueError):
            continue  # a malformed record says nothing about the plant's clock
        newest = moment if newest is None or moment > newest else newest
    return now if newest is None or newest < now else (newest + timedelta(minutes=1)).astimezone(timezone.utc)


def cost_rules_file(plant: Path) -> Path | None:
    """A generated plant brings cost rules for its own cost centres; the shipped fixtures use the packaged ones."""
    rules = plant / "rules" / "costs.yaml"
    return rules.resolve() if rules.exists() else None
