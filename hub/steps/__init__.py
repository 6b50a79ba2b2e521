"""Units of work: which endpoint, mapping, logic and store calls make one step of a sync.

Dagster assets, the CLI, the benchmark and the harnesses call these; they know no Dagster.
"""
