"""`hub bench`: the hub's full and incremental sync beside what the mocks can serve and a per-record connector.

`run` orchestrates the phases (and documents their order), `phase` is the child process each
measured phase runs in, `report` turns figures into the table and the JSON.
"""
