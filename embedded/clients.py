"""The few requests the supervisor makes itself, through the libraries the app uses too: the docker SDK
on a node's unix socket, pyetcd and redis-py. Short timeouts: these answer whether a daemon is ready."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pyetcd
import redis
import requests.exceptions

from embedded.procs import ServiceError

API_VERSION = "1.41"  # what the nodes' dockerd (20.10) speaks; no version negotiation round trip
_DOCKER_DOWN = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


@contextlib.contextmanager
def docker_client(sock: Path, timeout: float = 5.0) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=f"unix://{sock}", version=API_VERSION, timeout=int(timeout) or 1)
    try:
        yield client
    finally:
        client.close()


def docker_ping(sock: Path) -> bool:
    try:
        with docker_client(sock, timeout=1) as client:
            return bool(client.ping())
    except _DOCKER_DOWN:
        return False


def docker_has_image(sock: Path, image: str) -> bool:
    with docker_client(sock) as client:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
    return True


def docker_import(sock: Path, tarball: Path, image: str, changes: list[str]) -> None:
    """`docker import -c CHANGE... tarball image` (never a pull: the image comes from the tarball)."""
    repo, _, tag = image.rpartition(":")
    with docker_client(sock, timeout=120) as client, tarball.open("rb") as data:
        try:  # a file object, not a path: a path the SDK cannot read would be taken for a URL
            reply = client.api.import_image(src=data, repository=repo, tag=tag, changes=changes)
        except _DOCKER_DOWN as exc:
            raise ServiceError(f"docker import of {image} failed: {exc}") from exc
    # The reply is a stream of JSON progress messages; a failure is one with "error" in it.
    errors = [line for line in str(reply).splitlines() if '"error"' in line]
    if errors:
        raise ServiceError(f"docker import of {image} failed: {json.loads(errors[0]).get('error')}")


def docker_remove_all(sock: Path) -> int:
    """Removes every container of a node (`docker rm -f $(docker ps -aq)`); returns how many."""
    with docker_client(sock, timeout=30) as client:
        containers = client.containers.list(all=True)
        for container in containers:
            with contextlib.suppress(docker.errors.NotFound):  # gone by itself meanwhile
                container.remove(force=True)
    return len(containers)


def etcd_client(port: int, timeout: float = 2.0) -> pyetcd.Etcd3Client:
    return pyetcd.client(host="127.0.0.1", port=port, timeout=timeout)


def etcd_healthy(port: int) -> bool:
    """The member answers with a leader (what `etcdctl endpoint health` checks)."""
    client = etcd_client(port, timeout=1.0)
    try:
        return bool(client.status().leader)
    except Exception:  # noqa: BLE001 — pyetcd raises its own errors and grpc's; any of them: not yet
        return False
    finally:
        client.close()


def etcd_delete_all(port: int) -> int:
    """`etcdctl del "" --prefix`: every key, whatever its prefix; returns how many there were."""
    client = etcd_client(port, timeout=10.0)
    try:
        keys = [meta.key for _, meta in client.get_all(keys_only=True)]
        for key in keys:
            client.delete(key)
    finally:
        client.close()
    return len(keys)


def redis_client(port: int, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout)


def redis_ping(port: int) -> bool:
    try:
        with redis_client(port, timeout=1.0) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def redis_flushall(port: int) -> None:
    with redis_client(port) as client:
        client.flushall()
