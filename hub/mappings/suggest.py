"""Did-you-mean hints: a misspelt name in a hand-edited file should point at the right one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(found: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``found``, if one is close enough to be a likely typo."""
    candidates = list(choices)
    matches = difflib.get_close_matches(found, candidates, n=1, cutoff=0.6)
    if not matches:
        folded = {choice.lower(): choice for choice in candidates}
        matches = [folded[m] for m in difflib.get_close_matches(found.lower(), list(folded), n=1, cutoff=0.6)]
    return matches[0] if matches else None


def expected(found: str, choices: Iterable[str], listed: bool = True) -> str:
    """"did you mean 'strip'? expected one of id, strip, upper, lower" (the hint only when one is close).

    ``listed=False`` leaves the list out, for choices too many to print (time zones).
    """
    candidates = list(choices)
    best = closest(found, candidates)
    hint = f"did you mean {best!r}?" if best is not None else ""
    if not listed:
        return hint or "no similar name known"
    listing = f"expected one of {', '.join(candidates)}"
    return f"{hint} {listing}" if hint else listing
