"""A three-broker Kafka cluster (and a Redis) of the tests' own, run by scripts/services.

:class:`Cluster` starts ``scripts/services/services start --brokers 3`` in a directory of its
own, on free loopback ports, so it never meets the one-broker cluster the rest of the suite
uses; :meth:`Cluster.kill_broker` / :meth:`Cluster.start_broker` are the script's
``kill-broker`` (kill -9) and ``start-broker``. Brokers notice a dead peer after 3 s
(``broker.session.timeout.ms``) instead of 9 s, so leader elections and restarts are quick.

Used by the ``three_brokers`` fixture (conftest.py) and bench/soak.py.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
SCRIPT: Final = REPO / "scripts" / "services" / "services"
FAST_FAILOVER: Final = "broker.session.timeout.ms=3000 broker.heartbeat.interval.ms=500"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_block(count: int, *, low: int = 20_000, high: int = 32_000) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    for _ in range(200):
        base = random.randrange(low, high - count)
        if all(_free(base + n) for n in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between {low} and {high}")


class Cluster:
    """Three Kafka brokers and a Redis under ``directory``, started by the services script."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Broker N: base + 2(N-1), its controller the port after; Redis after the last one.
        base = free_port_block(7)
        self.env = {
            **os.environ,
            "FLOWAI_SERVICES_DIR": str(directory),
            "FLOWAI_KAFKA_PORT": str(base),
            "FLOWAI_KAFKA_CONTROLLER_PORT": str(base + 1),
            "FLOWAI_KAFKA_PORT_STEP": "2",
            "FLOWAI_REDIS_PORT": str(base + 6),
            "FLOWAI_KAFKA_EXTRA_CONFIG": FAST_FAILOVER,
        }
        self.bootstrap = ",".join(f"127.0.0.1:{base + 2 * n}" for n in range(3))
        self.redis_url = f"redis://127.0.0.1:{base + 6}/0"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"scripts/services/services {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stderr[-4000:]}"
            )

    def start(self) -> None:
        self._run("start", "--brokers", "3")

    def stop(self) -> None:
        self._run("stop")

    def kill_broker(self, node: int) -> None:
        """kill -9 broker ``node`` (1-3)."""
        self._run("kill-broker", str(node))

    def start_broker(self, node: int) -> None:
        """Start broker ``node`` again and wait until it serves."""
        self._run("start-broker", str(node))

    def broker_port(self, node: int) -> int:
        return int(self.env["FLOWAI_KAFKA_PORT"]) + 2 * (node - 1)
