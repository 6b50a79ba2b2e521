"""Where Dagster keeps runs and events when no one has said otherwise."""

import os
from pathlib import Path


def ensure_dagster_home(default: Path) -> Path:
    """DAGSTER_HOME defaults to a local folder with SQLite storage and telemetry off."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default.resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return home
