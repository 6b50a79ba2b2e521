"""Credentials from settings as headers and basic-auth pairs, for httpx and requests alike."""

from __future__ import annotations

from hub.settings import SystemEndpoint


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
