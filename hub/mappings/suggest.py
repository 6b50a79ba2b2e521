"""Did-you-mean hints: a misspelt name in a hand-edited file should point at the right one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(found: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``found``, if one is close enough to be a likely typo.

    difflib finds the candidates (or, failing that, a name that starts with ``found``); the
    fewest edits (a swap of two letters counting as one) picks among them, so 'form' suggests
    'from', not 'format'.
    """
    candidates = list(choices)
    folded = {choice.lower(): choice for choice in candidates}
    matches = difflib.get_close_matches(found.lower(), list(folded), n=3, cutoff=0.6)
    if not matches:  # a name cut short: 'sap' for 'sap_date'
        matches = sorted((c for c in folded if len(found) >= 3 and c.startswith(found.lower())), key=len)[:1]
    if not matches:
        return None
    return folded[min(matches, key=lambda m: _edits(found.lower(), m))]


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, other in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            if i > 1 and j > 1 and char == b[j - 2] and a[i - 2] == other:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


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
