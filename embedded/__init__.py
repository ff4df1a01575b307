"""The embedded cluster's process supervision: etcd, Redis, dockerd nodes, PostgreSQL and the Django
processes, each started detached and stopped by pid. Plain Python (standard library, psutil,
cryptography); imports nothing of Django or the rest of the project.

Modules: ``config`` (directory, ports, names, services.conf, the env file), ``procs`` (pidfiles, the
ours-check, spawn, stop, strays, ports), ``clients`` (Docker API on a unix socket, etcd, Redis),
``tls``, ``nodes`` (bridge, cgroups, mounts, dockerd, reap, image), ``postgres``, ``services``
(``Cluster`` and the ``bin/services`` CLI) and ``eru`` (the Django processes and the ``bin/eru`` CLI).
"""
