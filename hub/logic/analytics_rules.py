"""Thresholds and windows of the permit analytics, in one validated rule file.

Safety sets these figures (the 15-minute guardian response, the 92 % target, ...), so they
live in YAML like the gate's rules, and a bad value is refused naming the file and field.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.logic.rules import RULES_DIR
from hub.yamlfile import load_validated


class AnalyticsRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    # Days are plant-local: a permit submitted at 01:30 Shanghai time counts on that day.
    plant_timezone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    # A guardian on site within this time of the submission is an effective response.
    guardian_response: timedelta = timedelta(minutes=15)
    # The share of effective responses a site must reach each day; below it, an alert with root causes.
    response_rate_threshold: float = Field(default=0.92, gt=0, le=1)
    # The days of the same permit type the root-cause breakdown compares with.
    root_cause_days: int = Field(default=3, ge=1, le=31)
    # An open permit this close to its planned end (or past it) is overdue.
    overdue_warning: timedelta = timedelta(minutes=30)
    overdue_top: int = Field(default=5, ge=1, le=100)
    # Two permits of one type in one area this close together: show the area's history of the type.
    similar_work_gap: timedelta = timedelta(hours=72)
    similar_work_history_months: int = Field(default=6, ge=1, le=60)

    @field_validator("guardian_response", "overdue_warning", "similar_work_gap")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. PT15M")
        return value


def load_analytics_rules(path: Path | str | None = None) -> AnalyticsRules:
    return load_validated(path or RULES_DIR / "analytics.yaml", AnalyticsRules)
