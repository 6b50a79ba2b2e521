"""Date, time and duration formats vendors send, and the UTC instants the hub keeps.

Named formats: ``iso`` (ISO 8601; a date-time needs an offset), ``sap_date`` (SAP OData
``/Date(1690000000000)/``, optionally ``/Date(1690000000000+0480)/``: milliseconds since 1970 UTC,
the offset in minutes only says which zone the sender was in), ``iso_duration`` (``PT11H50M49S``).
Anything else is a strptime pattern; a pattern without ``%z`` reads naive plant-local time in
the mapping's ``timezone``, and a local time that does not exist or exists twice (daylight
saving) is refused rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hub.mappings.values import fail, type_name

ISO = "iso"
SAP_DATE = "sap_date"
ISO_DURATION = "iso_duration"

#: Named formats each type accepts besides a strptime pattern (duration: the name only).
NAMED_FORMATS: dict[str, tuple[str, ...]] = {
    "datetime": (ISO, SAP_DATE),
    "date": (ISO, SAP_DATE),
    "duration": (ISO_DURATION,),
    "time_of_day": (ISO_DURATION,),
}

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
_DAY_MS = 86_400_000
_SAMPLE_TIME = datetime(2026, 12, 31, 23, 59, 58)
_SAP_DATE_RE = re.compile(r"\\?/Date\((-?\d+)(?:([+-])(\d{4}))?\)\\?/")
_DURATION_RE = re.compile(
    r"(?P<sign>-)?P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)(?:[.,](?P<fraction>\d+))?S)?)?"
)


def is_usable_pattern(fmt: str) -> bool:
    """A strptime pattern that can read back what it writes."""
    if "%" not in fmt:
        return False
    try:
        datetime.strptime(_SAMPLE_TIME.strftime(fmt), fmt)
    except ValueError:
        return False
    return True


def is_local_pattern(fmt: str) -> bool:
    """A pattern (not a named format) that reads naive plant-local time."""
    return fmt not in (ISO, SAP_DATE, ISO_DURATION) and "%z" not in fmt


# --------------------------------------------------------------------------- SAP /Date(ms)/


def parse_sap_date(text: str) -> datetime:
    match = _SAP_DATE_RE.fullmatch(text.strip())
    if match is None:
        raise fail(f"cannot parse {text!r} as an SAP date (expected /Date(milliseconds)/)")
    if match.group(3) is not None and int(match.group(3)) >= 24 * 60:
        raise fail(f"{text!r} has an offset of {match.group(3)} minutes, more than a day")
    try:
        return EPOCH + int(match.group(1)) * _MILLISECOND
    except OverflowError:
        raise fail(f"{text!r} is out of range") from None


def format_sap_date(value: datetime | date) -> str:
    """``/Date(ms)/``: a date-time to the millisecond (finer parts dropped), a date at 00:00 UTC."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return f"/Date({(value - EPOCH) // _MILLISECOND})/"


def _sap_calendar_date(text: str) -> date:
    moment = parse_sap_date(text)
    if (moment - EPOCH) // _MILLISECOND % _DAY_MS:
        raise fail(f"{text!r} is not a date: it has a time of day ({moment.time().isoformat()} UTC)")
    return moment.date()


# --------------------------------------------------------------------------- ISO 8601 durations


def parse_iso_duration(text: str) -> timedelta:
    stripped = text.strip()
    match = _DURATION_RE.fullmatch(stripped)
    parts = match.groupdict() if match else {}
    if not match or stripped.endswith(("P", "T")) or not any(v for k, v in parts.items() if k != "sign"):
        raise fail(f"cannot parse {text!r} as an ISO 8601 duration (e.g. PT11H50M49S)")
    if parts["years"] or parts["months"]:
        raise fail(f"{text!r} counts years or months, which have no fixed length")
    fraction = parts["fraction"] or ""
    if fraction.rstrip("0")[6:]:
        raise fail(f"{text!r} is finer than a microsecond")
    value = timedelta(
        weeks=int(parts["weeks"] or 0),
        days=int(parts["days"] or 0),
        hours=int(parts["hours"] or 0),
        minutes=int(parts["minutes"] or 0),
        seconds=int(parts["seconds"] or 0),
        microseconds=int((fraction + "000000")[:6]),
    )
    return -value if parts["sign"] else value


def format_iso_duration(value: timedelta) -> str:
    """SAP's style: ``PT11H50M49S``; whole days as ``P1DT…``; microseconds only when present."""
    if value < timedelta(0):
        return "-" + format_iso_duration(-value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
    days = f"{value.days}D" if value.days else ""
    return f"P{days}T{hours:02d}H{minutes:02d}M{seconds:02d}{fraction}S"


# --------------------------------------------------------------------------- plant-local time


def localize(naive: datetime, zone: ZoneInfo, text: str) -> datetime:
    """A naive plant-local time as UTC; refuses times daylight saving makes missing or doubled."""
    offset = naive.replace(tzinfo=zone).utcoffset()
    if offset != naive.replace(tzinfo=zone, fold=1).utcoffset():
        early = naive.replace(tzinfo=zone)
        if early.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != naive:
            raise fail(f"{text!r} does not exist in {zone.key} (clocks went forward)")
        raise fail(f"{text!r} is ambiguous in {zone.key} (clocks went back)")
    assert offset is not None
    return (naive - offset).replace(tzinfo=timezone.utc)


_FAST_DIRECTIVES = {
    "Y": r"(?P<Y>\d{4})",
    "m": r"(?P<m>\d{1,2})",
    "d": r"(?P<d>\d{1,2})",
    "H": r"(?P<H>\d{1,2})",
    "M": r"(?P<M>\d{1,2})",
    "S": r"(?P<S>\d{1,2})",
}


def _fast_pattern(fmt: str) -> Callable[[str], datetime] | None:
    """A regex reader for purely numeric patterns like '%Y-%m-%d %H:%M:%S' (strptime is ~5x slower).

    Accepts exactly what strptime accepts for these directives; other patterns return None and
    use strptime.
    """
    out, seen, i = [], set(), 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%":
            directive = fmt[i + 1 : i + 2]
            if directive == "%":
                out.append("%")
            elif directive in _FAST_DIRECTIVES and directive not in seen:
                seen.add(directive)
                out.append(_FAST_DIRECTIVES[directive])
            else:
                return None
            i += 2
        else:
            out.append(r"\s+" if char.isspace() else re.escape(char))
            i += 1
    if not {"Y", "m", "d"} <= seen:
        return None
    regex = re.compile("".join(out))

    def parse(text: str) -> datetime:
        match = regex.fullmatch(text)
        if match is None:
            raise ValueError(text)
        g = match.groupdict()
        return datetime(
            int(g["Y"]), int(g["m"]), int(g["d"]), int(g.get("H") or 0), int(g.get("M") or 0), int(g.get("S") or 0)
        )

    return parse


# --------------------------------------------------------------------------- readers


def datetime_parser(fmt: str, zone: ZoneInfo | None) -> Callable[[str], datetime]:
    """text -> UTC date-time. ``zone`` is needed (checked at load) for local patterns."""
    if fmt == SAP_DATE:
        return parse_sap_date
    if fmt == ISO:

        def parse_iso(text: str) -> datetime:
            try:
                value = datetime.fromisoformat(text.strip())
            except ValueError:
                raise fail(f"cannot parse {text!r} as an ISO 8601 date-time") from None
            if value.tzinfo is None:
                raise fail(f"{text!r} has no UTC offset")
            return value.astimezone(timezone.utc)

        return parse_iso

    read = _fast_pattern(fmt) or (lambda text: datetime.strptime(text, fmt))

    def parse_pattern(text: str) -> datetime:
        try:
            value = read(text.strip())
        except ValueError:
            raise fail(f"cannot parse {text!r} with format {fmt!r}") from None
        if value.tzinfo is not None:
            return value.astimezone(timezone.utc)
        assert zone is not None
        return localize(value, zone, text)

    return parse_pattern


def date_parser(fmt: str) -> Callable[[str], date]:
    if fmt == SAP_DATE:
        return _sap_calendar_date
    if fmt == ISO:

        def parse_iso_date(text: str) -> date:
            try:
                return date.fromisoformat(text.strip())
            except ValueError:
                raise fail(f"cannot parse {text!r} as an ISO 8601 date") from None

        return parse_iso_date

    def parse_pattern_date(text: str) -> date:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            raise fail(f"cannot parse {text!r} with format {fmt!r}") from None

    return parse_pattern_date


def time_of_day_parser(fmt: str) -> Callable[[str], timedelta]:
    """text -> time since midnight: an ISO duration (SAP ``PT11H50M49S``) or a pattern like '%H%M%S'."""

    def parse(text: str) -> timedelta:
        if fmt == ISO_DURATION:
            value = parse_iso_duration(text)
        else:
            try:
                moment = datetime.strptime(text.strip(), fmt)
            except ValueError:
                raise fail(f"cannot parse {text!r} with format {fmt!r}") from None
            value = moment - moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if not timedelta(0) <= value < timedelta(days=1):
            raise fail(f"{text!r} is not a time of day (0 to 24 hours)")
        return value

    return parse


# --------------------------------------------------------------------------- writers


def datetime_renderer(fmt: str, zone: ZoneInfo | None) -> Callable[[Any], str]:
    def check(value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise fail(f"expected a date-time, found {type_name(value)}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise fail("date-time has no time zone")
        return value

    if fmt == ISO:
        return lambda value: check(value).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if fmt == SAP_DATE:
        return lambda value: format_sap_date(check(value))
    target = zone or timezone.utc
    return lambda value: check(value).astimezone(target).strftime(fmt)


def date_renderer(fmt: str) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        if isinstance(value, datetime) or not isinstance(value, date):
            raise fail(f"expected a date, found {type_name(value)}")
        if fmt == ISO:
            return value.isoformat()
        if fmt == SAP_DATE:
            return format_sap_date(value)
        return value.strftime(fmt)

    return render


def render_duration(value: Any) -> str:
    if not isinstance(value, timedelta):
        raise fail(f"expected a duration, found {type_name(value)}")
    return format_iso_duration(value)
