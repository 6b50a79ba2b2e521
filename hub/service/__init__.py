"""The gate-check service (`hub serve`): a synchronous gate check the PTW calls before approval."""

from hub.service.app import GateApiNotConfigured, create_app

__all__ = ["GateApiNotConfigured", "create_app"]
