"""Whom the hub trusts over TLS: the public CAs, or the plant's own CA from `HUB_CA_BUNDLE`.

Verification is always on; there is no switch to turn it off. A certificate that does not
verify is told apart from other connection failures, because retrying it cannot help.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import certifi


@lru_cache(maxsize=8)
def httpx_verify(ca_bundle: str | None) -> ssl.SSLContext:
    """httpx's `verify`: the public CAs (certifi's bundle, as httpx uses), or only the given bundle.

    Built once per process and shared by every client: loading a CA bundle costs about
    0.1 s, and a sync creates several clients.
    """
    return ssl.create_default_context(cafile=ca_bundle or certifi.where())


def requests_verify(ca_bundle: str | None) -> str | bool:
    """requests' `verify` (zeep's session): its public CA bundle, or only the given CA bundle."""
    return ca_bundle or True


def _causes(exc: BaseException):
    """The exception and everything it wraps: causes, contexts, urllib3 reasons and args."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending.extend(w for w in wrapped if isinstance(w, BaseException))


def certificate_problem(exc: BaseException) -> str | None:
    """Why the peer's certificate was refused, if that is what `exc` comes down to."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or "certificate verify failed"
    return None
