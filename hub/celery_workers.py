"""Celery workers that live as long as one sync: started, pinged, stopped, their queue removed.

Each invocation gets a queue of its own, so its workers never take a step queued by
anything else on the broker, and nothing else takes its steps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from celery import Celery
from kombu import Connection
from kombu.exceptions import OperationalError

STOP_TIMEOUT_S = 30.0


class BrokerUnreachable(RuntimeError):
    pass


def _check_broker(broker: str) -> None:
    with Connection(broker, connect_timeout=5) as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except (OperationalError, OSError) as exc:
            raise BrokerUnreachable(f"the Celery broker {connection.as_uri()} is not reachable: {exc}") from None


def _delete_queue(broker: str, queue: str) -> None:
    """The queue and the exchange Celery made for it outlive the workers; nothing else uses them."""
    with Connection(broker, connect_timeout=5) as connection:
        channel = connection.default_channel
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


def _stop(workers: list[subprocess.Popen]) -> None:
    """Warm shutdown (SIGTERM); a worker still there after the timeout is killed with its pool."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)  # its own session: the worker and its pool only
            worker.wait()


def _await_pongs(app: Celery, names: list[str], workers: list[subprocess.Popen], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    answered: set[str] = set()
    while answered != set(names):
        exited = [w.args for w in workers if w.poll() is not None]
        if exited:
            raise RuntimeError(f"a Celery worker exited before it answered a ping: {exited[0]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Celery workers did not answer a ping within {timeout_s:.0f} s: {sorted(set(names) - answered)}")
        for reply in app.control.ping(destination=names, timeout=1.0) or []:
            answered.update(reply)


@contextmanager
def celery_workers(env: Mapping[str, str], broker: str, count: int = 2, start_timeout_s: float = 120.0) -> Iterator[str]:
    """Run `count` workers (concurrency 1 each) with `env`; yields their queue once all answer a ping."""
    _check_broker(broker)
    queue = f"hub-sync-{uuid.uuid4().hex[:12]}"
    names = [f"{queue}-{number}@{socket.gethostname()}" for number in range(1, count + 1)]
    command = [sys.executable, "-m", "celery", "-A", "hub.celery_app", "worker", "-Q", queue, "-c", "1"]
    options = ["--prefetch-multiplier=1", "--without-gossip", "--without-mingle", "--loglevel=WARNING"]
    workers: list[subprocess.Popen] = []
    app = Celery(broker=broker)
    try:
        for name in names:
            # A session of its own: a Ctrl-C at the terminal reaches this process, which stops
            # the workers in order, instead of killing them under a running step.
            workers.append(subprocess.Popen([*command, "-n", name, *options], env=dict(env), start_new_session=True))
        _await_pongs(app, names, workers, start_timeout_s)
        yield queue
    finally:
        _stop(workers)
        app.close()
        _delete_queue(broker, queue)
