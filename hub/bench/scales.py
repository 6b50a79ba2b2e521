"""The plant sizes the bench runs at, and how many permits the per-record connector gets at each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    name: str
    sites: int
    permits: int
    devices: int
    work_orders: int
    materials: int
    # Permits the per-record connector runs before its figures are extrapolated; None: all of them.
    naive_sample: int | None = None

    def plant_size(self) -> dict[str, int]:
        """The generator's size arguments."""
        return {
            "sites": self.sites,
            "permits": self.permits,
            "devices": self.devices,
            "work_orders": self.work_orders,
            "materials": self.materials,
        }


SCALES: dict[str, Scale] = {
    "small": Scale("small", sites=2, permits=1_000, devices=400, work_orders=10_000, materials=200),
    "medium": Scale("medium", sites=4, permits=10_000, devices=2_000, work_orders=50_000, materials=500),
    # At a few permits a second, all 100k permits one call at a time would take the better part of a day.
    "large": Scale(
        "large", sites=12, permits=100_000, devices=20_000, work_orders=500_000, materials=2_000, naive_sample=2_000
    ),
}
