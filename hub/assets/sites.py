"""Site partitions: each run of the sync handles one site's permits, so sites sync side by side."""

import warnings

from dagster import PreviewWarning, StaticPartitionsDefinition

from hub.settings import HubSettings

# Partitioned checks are a preview feature; the checks-only job needs them to run per site.
warnings.filterwarnings("ignore", "Specifying a partitions_def on an AssetCheckSpec", PreviewWarning)

# Read when the code location loads, like every other setting the definitions bind.
site_partitions = StaticPartitionsDefinition(list(HubSettings().sites))


def site_of(context) -> str | None:
    """The run's site (its partition tag); a run without one covers every site."""
    return context.partition_key if context.has_partition_key else None


def sites_of(context) -> list[str]:
    """The sites a run covers, each handled on its own: a device is (site, number)."""
    site = site_of(context)
    return [site] if site else list(site_partitions.get_partition_keys())
