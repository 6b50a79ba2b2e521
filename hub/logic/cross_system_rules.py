"""Thresholds of the cross-system analyses, in one validated rule file.

Safety tunes when a pattern is worth a look (how strong a correlation, how much sooner failures
come), so the figures live in YAML; a value that cannot mean anything is refused naming the
file and field.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from hub.logic.rules import RULES_DIR
from hub.yamlfile import load_validated


class _Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HeightQualityRules(_Rules):
    # Fewer months than this say nothing about a trend; a correlation needs three points at least.
    min_months: int = Field(default=6, ge=3, le=120)
    # A negative or zero threshold would flag workshops whose figures do not rise together.
    min_correlation: float = Field(default=0.8, gt=0, le=1)


class FailureIntervalRules(_Rules):
    recent_intervals: int = Field(default=3, ge=1, le=50)
    min_earlier_intervals: int = Field(default=2, ge=1, le=50)
    # 1 or less would flag devices whose failures do not come sooner at all.
    shortening_factor: float = Field(default=2.0, gt=1)


class CrossSystemRules(_Rules):
    version: str = Field(min_length=1)
    plant_timezone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    height_quality: HeightQualityRules = HeightQualityRules()
    failure_intervals: FailureIntervalRules = FailureIntervalRules()


def load_cross_system_rules(path: Path | str | None = None) -> CrossSystemRules:
    return load_validated(path or RULES_DIR / "cross_system.yaml", CrossSystemRules)
