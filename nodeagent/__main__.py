"""python -m nodeagent [--config /etc/eru/agent.yaml] [flags]: run the agent of one node until SIGTERM,
SIGINT or SIGQUIT (then its heartbeat key is deleted: a clean exit). Refuses to start when another
agent for the same node runs on this host (a lock under run_dir), or when the core does not know the
node."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO

import grpc

from engine.docker import DockerError
from nodeagent.agent import Agent
from nodeagent.config import Config, ConfigError, load
from nodeagent.forward import TargetError

log = logging.getLogger("nodeagent")
_FATAL = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def lock(config: Config) -> IO[str]:
    """The host-local lock of this node's agent (held while the process lives), with its pid in it."""
    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    path = run / f"eru-agent.{config.hostname}.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "?"
        raise ConfigError(
            f"another agent for node {config.hostname} runs on this host (pid {other}, lock {path})"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load()
        held = lock(config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    try:
        agent = Agent(config)
    except (TargetError, DockerError) as exc:
        log.error("%s", exc)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, lambda *_: done.set())
    while not done.is_set():  # Eru's agent: GetNode(hostname) first, and fail hard if it is unknown
        try:
            node = agent.core.get_node(config.hostname)
            break
        except grpc.RpcError as exc:
            if exc.code() in _FATAL:
                log.error("core refuses node %s: %s", config.hostname, exc.details())
                return 2
            log.warning("core unavailable (%s); again in 1 s", exc.details())
            done.wait(1.0)
    else:
        return 0
    log.info("agent for node %s (pod %s) reports to %s", node.name, node.podname, ", ".join(config.core))
    agent.start()
    done.wait()
    started = time.monotonic()
    agent.stop()
    log.info("stopped in %.2f s", time.monotonic() - started)
    held.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
