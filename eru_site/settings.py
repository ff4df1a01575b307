"""The only settings module: every value comes from an ERU_* environment variable, parsed once here,
with safe defaults for the embedded set-up (SQLite under var/, services on loopback)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import django_stubs_ext

# Django's generic classes (ModelAdmin[Pod], QuerySet[Node]) subscriptable at runtime, as the types say.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ERU_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def envsecret(name: str, default: str = "") -> str:
    """A secret from NAME, from the file named by NAME_FILE, or the default."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def _local_secret_key() -> str:
    """Embedded default: a random key kept in var/secret_key, made once."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = envsecret("ERU_SECRET_KEY") or _local_secret_key()
# Key for TLS material at rest (Fernet, derived); defaults to SECRET_KEY.
ERU_ENCRYPTION_KEY = envsecret("ERU_ENCRYPTION_KEY") or SECRET_KEY
DEBUG = envbool("ERU_DEBUG")
ALLOWED_HOSTS = os.environ.get("ERU_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("ERU_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally (no CDN)
    "django_filters",
    "clusters",
    "agents",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "clusters.htmx_auth.HtmxLoginRedirectMiddleware",
    "clusters.middleware.RequestIdMiddleware",
    "clusters.middleware.ApiJsonErrorsMiddleware",
]

ROOT_URLCONF = "eru_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "eru_site.wsgi.application"

_db_url = os.environ.get("ERU_DATABASE", "")
if _db_url.startswith("postgres"):
    from urllib.parse import urlparse

    _u = urlparse(_db_url)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _u.path.lstrip("/"),
            "USER": _u.username or "",
            "PASSWORD": _u.password or "",
            "HOST": _u.hostname or "",
            "PORT": str(_u.port or ""),
            "CONN_MAX_AGE": 60,
        }
    }
else:
    _db_path = Path(os.environ.get("ERU_DB", VAR_DIR / "eru.sqlite3"))
    _db_path.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _db_path,
            # Several processes write: wait for the lock instead of failing, take the write lock at
            # BEGIN so read-then-write transactions (scheduling) serialise, and use WAL for readers.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": os.environ.get("ERU_TEST_DB", str(VAR_DIR / "test.sqlite3"))},
            # Keep each thread's connection (the gRPC door answers an agent's call in about a
            # millisecond; opening SQLite with its PRAGMAs again per call would double that).
            "CONN_MAX_AGE": 600,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # collectstatic target; whitenoise also finds app files without it
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "clusters:pod-list"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clusters.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "clusters.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "clusters.api.exception_handler",
}
# OpenAPI 3.1: the deploy spec's JSON Schema (pydantic's) has nullable fields as `type: null`.
SPECTACULAR_SETTINGS = {
    "TITLE": "Eru portal API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "OAS_VERSION": "3.1.0",
    "DESCRIPTION": (
        "The Eru portal's REST API. Authenticate with `Authorization: Token eru_…` (or a session "
        "cookie, with its CSRF token). Lists are pages of at most 1000 (`limit`, default 100). "
        'Errors are JSON: `{"detail": …}`, or field errors on a 400. Creating POSTs (deployments, '
        "lambdas, replace) take an `Idempotency-Key` header: a retry with it answers the first result."
    ),
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "clusters.api_schema.add_error_responses",
    ],
    # Swagger UI from the sidecar's files (static, via whitenoise): these machines have no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Eru -----------------------------------------------------------------------------------------
ERU_ETCD_ENDPOINTS = [e for e in os.environ.get("ERU_ETCD_ENDPOINTS", "127.0.0.1:23790").split(",") if e]
ERU_ETCD_PREFIX = os.environ.get("ERU_ETCD_PREFIX", "/eru").rstrip("/")
# Eru keeps a workload's env (its secrets) in /workloads/{id} and its two index keys; anyone who may
# read etcd then reads them. Off: the mirror's workload JSON has "env": [] (the DB is the truth and
# nothing here reads env back from etcd); on, for Eru tools that read workloads from etcd directly
# (then keep etcd's read access as narrow as the secrets'). Reconcile rewrites the keys after a change.
ERU_ETCD_WORKLOAD_ENV = envbool("ERU_ETCD_WORKLOAD_ENV", False)
ERU_SHARE_BASE = envint("ERU_SHARE_BASE", 100)
ERU_MAX_FRAGMENT_CORES = envint("ERU_MAX_FRAGMENT_CORES", -1)
ERU_MEMORY_RESERVE = envint("ERU_MEMORY_RESERVE", 1 << 30)
ERU_HEARTBEAT_INTERVAL = envint("ERU_HEARTBEAT_INTERVAL", 10)  # a node's lease is 3 × this
# The core's gRPC door (Eru's pb.CoreRPC, port 5001 as in Eru), and selfmon's leader lease (Eru's
# ha_keepalive_interval): one core at a time watches for nodes whose agent stopped heartbeating.
ERU_GRPC_ADDRESS = os.environ.get("ERU_GRPC_ADDRESS", "127.0.0.1:5001")
ERU_GRPC_WORKERS = envint("ERU_GRPC_WORKERS", 16)
# Long gRPC calls (LogStream follows, status watches, deploys answered as they go) at once per core
# process: each holds a thread, in a pool ERU_GRPC_STREAMS threads above ERU_GRPC_WORKERS, so unary calls
# are still answered; one beyond is RESOURCE_EXHAUSTED at once.
ERU_GRPC_STREAMS = envint("ERU_GRPC_STREAMS", 64)
ERU_SELFMON_TTL = envint("ERU_SELFMON_TTL", 16)
# Streams (log follow) held open at once per web process (gunicorn's gthread workers have more
# threads than this, so pages are still answered); one beyond is a 503. A follow says something
# (a keep-alive) every ERU_STREAM_IDLE seconds, so a gone client frees its thread.
ERU_STREAMS = envint("ERU_STREAMS", 64)
ERU_STREAM_IDLE = float(os.environ.get("ERU_STREAM_IDLE", "15"))
ERU_EXEC_TIMEOUT = envint("ERU_EXEC_TIMEOUT", 600)  # seconds an exec in a workload is read, at most
# How often the sweep looks at every agentless node's containers (it also renews their heartbeat,
# so it must not be longer than the heartbeat interval).
ERU_SWEEP_INTERVAL = min(envint("ERU_SWEEP_INTERVAL", 5), ERU_HEARTBEAT_INTERVAL)
# Health checks of nodes without an agent, run by the sweep from the worker's host against each
# container's address. On by default, which is right where the workers reach the containers'
# networks (the embedded set-up: the node bridges are on this host); turn it off elsewhere, and
# health stays unknown until an agent checks.
ERU_SWEEP_HEALTHCHECKS = envbool("ERU_SWEEP_HEALTHCHECKS", True)
ERU_HEALTHCHECK_INTERVAL = envint("ERU_HEALTHCHECK_INTERVAL", 15)  # seconds between two checks of one
ERU_HEALTHCHECK_TIMEOUT = float(os.environ.get("ERU_HEALTHCHECK_TIMEOUT", "2"))  # per check
# A replacement with a health check must pass it within this many seconds, or the old one comes back.
ERU_REPLACE_HEALTH_TIMEOUT = envint("ERU_REPLACE_HEALTH_TIMEOUT", 60)
ERU_DOCKER_TIMEOUT = envint("ERU_DOCKER_TIMEOUT", 30)
# The usage history: how often the core polls the one-shot stats of agentless nodes' workloads
# (seconds; the history's finest step is 15 s), and how many stats calls per node are in flight.
ERU_USAGE_INTERVAL = envint("ERU_USAGE_INTERVAL", 15)
ERU_STATS_CONCURRENCY = envint("ERU_STATS_CONCURRENCY", 32)
# Audit rows older than this many days are deleted by a daily task (0 = kept forever).
ERU_AUDIT_RETENTION_DAYS = envint("ERU_AUDIT_RETENTION_DAYS", 365)
# Who may scrape /metrics without a token: client addresses or networks (comma-separated, e.g.
# 127.0.0.1,10.0.0.0/8); otherwise an administrator's API token. Behind a proxy, the proxy's address.
ERU_METRICS_ALLOW = [a.strip() for a in os.environ.get("ERU_METRICS_ALLOW", "").split(",") if a.strip()]
# Docker networks a deploy may ask for ("" = the node's default bridge). Never host/container:*.
ERU_NETWORKS = [n for n in os.environ.get("ERU_NETWORKS", "bridge").split(",") if n]

# --- Celery (one place: broker, serializer, limits, beat) ---------------------------------------
CELERY_BROKER_URL = os.environ.get("ERU_REDIS_URL", "redis://127.0.0.1:23779/0")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the broker goes away finishes (a lambda's watch, a creation mid-Docker call);
# its ack is lost with the connection, so it is delivered again, and every task is idempotent by
# its claim. Celery 6 will cancel such tasks instead; it warns of that on every connection loss
# while this is False, said or not.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# The sweep (container status, and the heartbeat of every node that answers) has a queue and a
# worker of its own, so a big deploy cannot delay it past the heartbeat lease.
# A lambda holds its worker thread for its whole run: lambdas have a queue (and bin/eru a worker) of
# their own, so they never keep a deploy, a removal or reconcile waiting.
CELERY_TASK_ROUTES = {"agents.sweep_nodes": {"queue": "heartbeat"}, "agents.run_lambda": {"queue": "lambda"}}
# The safety nets that repair what a crash left (the re-send of lost work and the adoption of containers
# a dead worker made; the rewrite of the etcd mirror) run every 120 s and 300 s; ERU_RECONCILE_INTERVAL
# (s) sets both — `bin/eru --ha`, where crashes are what the mode is for, sets 15.
ERU_RECONCILE_INTERVAL = float(os.environ.get("ERU_RECONCILE_INTERVAL") or 0)
CELERY_BEAT_SCHEDULE = {
    # A sweep that could not run within its interval is dropped, not piled up.
    "sweep-nodes": {
        "task": "agents.sweep_nodes",
        "schedule": float(ERU_SWEEP_INTERVAL),
        "options": {"expires": float(ERU_SWEEP_INTERVAL)},
    },
    "poll-usage": {
        "task": "agents.poll_usage",
        "schedule": float(ERU_USAGE_INTERVAL),
        "options": {"expires": float(ERU_USAGE_INTERVAL)},
    },
    "prune-usage": {"task": "agents.prune_usage", "schedule": 60.0},
    "prune-audit": {"task": "agents.prune_audit", "schedule": 86400.0},
    "expire-deployments": {"task": "agents.expire_deployments", "schedule": 5.0, "options": {"expires": 5.0}},
    # A start/stop/restart whose message the broker never had (or lost) goes again within seconds.
    "resend-actions": {"task": "agents.resend_actions", "schedule": 5.0, "options": {"expires": 5.0}},
    "reconcile-etcd": {"task": "agents.reconcile_etcd", "schedule": ERU_RECONCILE_INTERVAL or 300.0},
    "reconcile-containers": {
        "task": "agents.reconcile_containers",
        "schedule": ERU_RECONCILE_INTERVAL or 120.0,
    },
}


# Caches. "default" is each process's own. "throttle" holds the token exchange's count of attempts per
# client (clusters.api_tokens): Redis, which every web process and machine shares, so a client gets the
# rate once, not once per gunicorn worker. It has a Redis database of its own (ERU_CACHE_URL, default:
# the broker's Redis, next database number): a cache's clear() empties its whole database, and Celery's
# queues must not be in it. Without a Redis broker (or while Redis cannot be reached) the throttle
# counts in its own process, and says so in the log.
def _throttle_cache(url: str) -> dict[str, object]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme not in ("redis", "rediss"):
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}
    if "ERU_CACHE_URL" not in os.environ:
        url = u._replace(path=f"/{int(u.path.strip('/') or 0) + 1}").geturl()
    timeouts = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "OPTIONS": timeouts}


CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": _throttle_cache(os.environ.get("ERU_CACHE_URL", CELERY_BROKER_URL)),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("ERU_LOG_LEVEL", "INFO")},
}
