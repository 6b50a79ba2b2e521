"""Permit-to-work REST API: cursor-paged permit listing and hold write-back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from hub.connectors.rest import RestClient


class PtwClient:
    def __init__(self, rest: RestClient, page_size: int):
        self.rest = rest
        self.page_size = page_size

    def permit_pages(self, updated_since: str | None) -> Iterator[list[dict[str, Any]]]:
        """Pages of vendor permit records changed at or after `updated_since` (ISO 8601)."""
        params: dict[str, Any] = {"page_size": self.page_size}
        if updated_since:
            params["updated_since"] = updated_since
        while True:
            page = self.rest.request("GET", "/api/v1/permits", params=params)
            yield page["items"]
            token = page.get("next_page_token")
            if not token:
                return
            params = {**params, "page_token": token}

    def put_hold(self, ticket_no: str, source: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.rest.request("PUT", f"/api/v1/permits/{quote(ticket_no, safe='')}/holds/{quote(source, safe='')}", json=body)

    def release_hold(self, ticket_no: str, source: str) -> dict[str, Any]:
        return self.rest.request("DELETE", f"/api/v1/permits/{quote(ticket_no, safe='')}/holds/{quote(source, safe='')}")

    def get_permit(self, ticket_no: str) -> dict[str, Any]:
        return self.rest.request("GET", f"/api/v1/permits/{quote(ticket_no, safe='')}")
