"""Credentials from settings as headers and basic-auth pairs, for httpx and requests alike,
and the means to scrub them from any text a system sends back."""

from __future__ import annotations

import base64

from hub.settings import SystemEndpoint

REDACTED = "**********"


def for_scheme(endpoint: SystemEndpoint, scheme: str, header: str | None = None) -> SystemEndpoint:
    """The endpoint with only the credential an auth scheme sends (`api_key` in `header`).

    A system's description names its scheme, so a credential meant for another scheme (or
    another system) is never sent; the credentials themselves still come only from settings.
    """
    kept = {
        "none": {},
        "basic": {"username": endpoint.username, "password": endpoint.password},
        "bearer": {"token": endpoint.token},
        "api_key": {"api_key": endpoint.api_key, "api_key_header": header or endpoint.api_key_header},
    }[scheme]
    cleared = {"username": None, "password": None, "token": None, "api_key": None}
    return endpoint.model_copy(update={**cleared, **kept})


def auth_headers(endpoint: SystemEndpoint) -> dict[str, str]:
    headers: dict[str, str] = {}
    if endpoint.token is not None:
        headers["Authorization"] = f"Bearer {endpoint.token.get_secret_value()}"
    if endpoint.api_key is not None:
        headers[endpoint.api_key_header] = endpoint.api_key.get_secret_value()
    return headers


def basic_credentials(endpoint: SystemEndpoint) -> tuple[str, str] | None:
    if endpoint.username is None or endpoint.password is None:
        return None
    return endpoint.username, endpoint.password.get_secret_value()


def secret_values(endpoint: SystemEndpoint) -> tuple[str, ...]:
    """Every form a credential takes on the wire, longest first, so none survives `redact`."""
    values = [s.get_secret_value() for s in (endpoint.password, endpoint.token, endpoint.api_key) if s is not None]
    basic = basic_credentials(endpoint)
    if basic is not None:
        values.append(base64.b64encode(":".join(basic).encode()).decode())
    return tuple(sorted({v for v in values if v}, key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret replaced: a server that echoes a request must not leak it onward."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
