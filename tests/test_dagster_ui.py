"""The Dagster UI, started on workspace.yaml, serves the asset lineage graph."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).parents[1]
QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webserver_shows_the_lineage_graph(tmp_path):
    port = free_port()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen(
        [str(webserver), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        nodes = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and nodes is None:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10).json()
                nodes = reply["data"]["assetNodes"] or None
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                assert server.poll() is None, "dagster-webserver exited"
                time.sleep(1)
        assert nodes, "the UI did not serve the asset graph in time"
    finally:
        server.terminate()
        server.wait(timeout=30)

    edges = {
        ("/".join(dep["path"]), "/".join(node["assetKey"]["path"])) for node in nodes for dep in node["dependencyKeys"]
    }
    assert ("permits", "equipment") in edges
    assert ("equipment_clearance", "permit_gate_decisions") in edges
    assert ("safety_cost_entries", "erp_postings") in edges
    # The plant systems at the edges: what the hub reads and where its write-backs land.
    assert {("ptw", "permits"), ("eam", "equipment"), ("permit_gate_decisions", "ptw_holds"), ("erp_postings", "erp_journal_entries")} <= edges
    # 15, the MES quality rates, the six permit analytics and the two analyses across systems.
    assert len({"/".join(n["assetKey"]["path"]) for n in nodes}) == 24
