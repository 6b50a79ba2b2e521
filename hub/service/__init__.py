"""The gate-check service (`hub serve`): a synchronous gate check the PTW calls before approval."""

from hub.service.app import GateApiNotConfigured, create_app

__all__ = ["GateApiNotConfigured", "app_from_environment", "create_app"]


def app_from_environment():
    """The app for this process's HUB_* settings: what each of several server processes builds."""
    from hub.settings import HubSettings

    return create_app(HubSettings())
