"""Pod page cost: the page of a pod with 10,000 nodes against the same page with 10 nodes — same run,
same database, same logged-in client. Measures the response size, the time (median of N) and the
number of SQL queries, through Django's test Client (the whole stack: middleware, session, view,
templates). Targets: at most 100 KB, at most 100 ms, the same number of queries as with 10 nodes.

Usage: .venv/bin/python bench/pod_page.py [--rounds 15] [--nodes 10000]
Needs no services: the rows go straight into a throwaway SQLite database under var/bench-pod-page
(made fresh each run), and etcd's heartbeats are stood in for (every node is up, the worst case for
the up count)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path and would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
DIR = ROOT / "var" / "bench-pod-page"
GIB = 1024**3


def setup_django() -> None:
    DIR.mkdir(parents=True, exist_ok=True)
    db = DIR / "bench.sqlite3"
    for leftover in DIR.glob("bench.sqlite3*"):
        leftover.unlink()
    os.environ.update(ERU_DB=str(db), ERU_VAR_DIR=str(DIR), ERU_LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eru_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--nodes", type=int, default=10_000)
    args = parser.parse_args()
    setup_django()

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.urls import reverse

    from clusters import etcd
    from clusters.models import Node, Pod

    setup_test_environment()  # the test Client's settings (ALLOWED_HOSTS "testserver", templates)
    sizes = {"small": 10, "large": args.nodes}
    names: set[str] = set()
    for label, size in sizes.items():
        pod = Pod.objects.create(name=f"bench-{label}", favor="cpu")
        rows = [
            Node(
                name=f"{label}-{i:05d}",
                pod=pod,
                endpoint=f"tcp://10.0.{i // 250}.{i % 250}:2376",
                cpu_map={str(c): 100 for c in range(8)},
                used_cpu_map={"0": 50} if i % 3 == 0 else {},
                used_cpu=0.5 if i % 3 == 0 else 0.0,
                memory=32 * GIB,
                used_memory=(i % 7) * GIB,
                labels={"zone": f"z{i % 4}", "disk": "ssd"},
                bypass=i % 50 == 0,
            )
            for i in range(size)
        ]
        Node.objects.bulk_create(rows, batch_size=500)
        names.update(r.name for r in rows)
    etcd.alive_nodes = lambda **_: set(names)  # type: ignore[assignment]
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    client = Client()
    client.force_login(user)

    results: dict[str, tuple[int, float, int]] = {}
    for label in sizes:
        url = reverse("clusters:pod-detail", args=[f"bench-{label}"])
        assert client.get(url).status_code == 200, url  # warm: templates compiled, session cached
        times = []
        for _ in range(args.rounds):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - start)
            assert response.status_code == 200
        results[label] = (len(response.content), statistics.median(times), len(queries))

    size_s, time_s, q_s = results["small"]
    size_l, time_l, q_l = results["large"]
    print(f"pod page, median of {args.rounds}, through django.test.Client")
    print(f"{'nodes':>8} {'bytes':>10} {'ms':>8} {'queries':>8}")
    print(f"{sizes['small']:>8} {size_s:>10} {time_s * 1000:>8.1f} {q_s:>8}")
    print(f"{sizes['large']:>8} {size_l:>10} {time_l * 1000:>8.1f} {q_l:>8}")
    print(
        f"ratio {sizes['large']}/{sizes['small']}: size {size_l / size_s:.2f}x, time {time_l / time_s:.2f}x, "
        f"queries {q_l - q_s:+d}"
    )
    ok = size_l <= 100_000 and time_l <= 0.100 and q_l == q_s
    print(
        f"targets (≤ 100 KB, ≤ 100 ms, same queries): {'met' if ok else 'NOT met'} "
        f"({size_l / 1000:.1f} KB, {time_l * 1000:.1f} ms, {q_l} vs {q_s} queries)"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
