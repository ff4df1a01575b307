"""Eru's domain as rows: pods, nodes, workloads, deployments, memberships, API tokens, audit events.

Rows are written only by clusters.services. Model methods compute derived state only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F

from clusters import crypto


class Pod(models.Model):
    class Favor(models.TextChoices):
        CPU = "cpu", "cpu (bound: workloads get their own cores)"
        MEMORY = "memory", "memory (unbound: CFS quota, memory drives capacity)"

    name = models.CharField(max_length=64, unique=True)
    desc = models.CharField(max_length=255, blank=True)
    favor = models.CharField(max_length=8, choices=Favor.choices, default=Favor.CPU)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def eru_json(self) -> dict[str, Any]:
        return {"name": self.name, "desc": self.desc}


class PodPolicy(models.Model):
    """What a pod's members who are not administrators may ask of a container (administrators may ask
    anything): by default none of privileged, host or container: networks, a bind of the Docker
    socket, host paths, sysctls beyond the safe list, or added capabilities. Set by administrators
    (clusters.services.pod_policy_set: audited)."""

    pod = models.OneToOneField(Pod, on_delete=models.CASCADE, primary_key=True, related_name="policy")
    privileged = models.BooleanField(default=False, help_text="privileged containers")
    host_network = models.BooleanField(default=False, help_text="the host's network, or container:…")
    docker_socket = models.BooleanField(default=False, help_text="a bind of the Docker socket")
    host_paths = models.JSONField(default=list, blank=True, help_text="host path prefixes binds may use")
    sysctls = models.JSONField(default=list, blank=True, help_text="sysctls beyond the safe list")
    cap_add = models.JSONField(default=list, blank=True, help_text="capabilities that may be added")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"policy of {self.pod_id}"


class PodMember(models.Model):
    class Role(models.TextChoices):
        VIEWER = "viewer"
        DEPLOYER = "deployer"
        OWNER = "owner"

    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pod_roles")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pod", "user"], name="unique_pod_member")]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.pod}"


class Team(models.Model):
    """A group of users: pod roles may be granted to it, and quotas are per team per pod. Members are
    changed through clusters.services (audited), in the portal, the API and the admin alike."""

    name = models.CharField(max_length=64, unique=True)
    desc = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMember", related_name="teams", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMember(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_team_member")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class PodTeamRole(models.Model):
    """A pod role granted to every member of a team (as PodMember grants one to a user)."""

    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="team_roles")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="pod_roles")
    role = models.CharField(max_length=10, choices=PodMember.Role.choices, default=PodMember.Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pod", "team"], name="unique_pod_team_role")]

    def __str__(self) -> str:
        return f"team {self.team} {self.role} of {self.pod}"


class Quota(models.Model):
    """What a team's workloads may hold in a pod, all together: cpu (the sum of requests), memory
    (bytes) and the number of workloads; None: no limit on that one."""

    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="quotas")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="quotas")
    cpu = models.FloatField(null=True, blank=True, help_text="cpus (sum of requests); empty: no limit")
    memory = models.BigIntegerField(null=True, blank=True, help_text="bytes; empty: no limit")
    workloads = models.PositiveIntegerField(null=True, blank=True, help_text="empty: no limit")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pod", "team"], name="unique_quota")]

    def __str__(self) -> str:
        return f"quota of {self.team} in {self.pod}"


class Node(models.Model):
    name = models.CharField(max_length=64, unique=True)
    pod = models.ForeignKey(Pod, on_delete=models.PROTECT, related_name="nodes")
    endpoint = models.CharField(max_length=255)
    tls_ca = models.TextField(blank=True, help_text="encrypted")
    tls_cert = models.TextField(blank=True, help_text="encrypted")
    tls_key = models.TextField(blank=True, help_text="encrypted")
    labels = models.JSONField(default=dict, blank=True)
    bypass = models.BooleanField(default=False, help_text="operator 'down': no new workloads")
    # capacity (Eru cpumem plugin): pieces per core id, memory bytes
    share_base = models.PositiveIntegerField(default=100)
    cpu_map = models.JSONField(default=dict)
    memory = models.BigIntegerField(default=0)
    # usage: pieces held by bound workloads per core, sum of cpu requests, sum of memory requests
    used_cpu_map = models.JSONField(default=dict)
    used_cpu = models.FloatField(default=0.0)
    used_memory = models.BigIntegerField(default=0)
    info = models.JSONField(default=dict, blank=True, help_text="engine info at the last probe")
    last_error = models.TextField(blank=True)
    # When the core last heard from the node's engine (a sweep's list call that answered): the "last
    # observed" of every workload on it. Kept fresh by every sweep, unlike the workload rows.
    observed_at = models.DateTimeField(null=True, blank=True)
    # The node agent. Agent-managed from its first report until an operator clears it: neither pinged
    # nor swept centrally (a dead agent must not hand its node back to a ping that keeps it up).
    agent = models.BooleanField(default=False, help_text="agent-managed: its agent reports its status")
    agent_version = models.CharField(max_length=128, blank=True)
    agent_peer = models.CharField(max_length=128, blank=True, help_text="where its agent reports from")
    agent_heard_at = models.DateTimeField(null=True, blank=True)  # its agent's last heartbeat
    agent_conflict = models.CharField(max_length=300, blank=True, help_text="two agents report for it")
    agent_conflict_at = models.DateTimeField(null=True, blank=True)  # when the second one last did
    # The core lost the node: its heartbeats answer "report every container again" until it has.
    agent_resync = models.BooleanField(default=False)
    # Log lines its agent could not forward (a target's queue full), since the agent started.
    agent_log_dropped = models.BigIntegerField(default=0)
    # The agent's credential (gRPC username node.<name>): only its SHA-256 digest; empty: none.
    secret_digest = models.CharField(max_length=64, blank=True)
    secret_created_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            # AUTO's roomiest nodes (selectors.roomiest_nodes): the most free memory first, read from
            # the index instead of sorting every node of the pod on every deploy.
            models.Index(
                F("pod"),
                (F("memory") - F("used_memory")).desc(),
                condition=models.Q(bypass=False),
                name="node_free_memory",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def grpc_username(self) -> str:
        """The node's principal on the gRPC door: its own form, so it never collides with a user's."""
        return f"node.{self.name.lower()}"

    @property
    def cores(self) -> int:
        return len(self.cpu_map)

    @property
    def cpu_capacity(self) -> float:
        return float(sum(self.cpu_map.values())) / self.share_base

    @property
    def bound_pieces_used(self) -> int:
        return sum(self.used_cpu_map.values())

    def is_available(self, alive: set[str]) -> bool:
        """Takes new workloads: not set down by an operator, and its heartbeat key (in `alive`,
        the names etcd.alive_nodes() read) has not expired."""
        return not self.bypass and self.name in alive

    def tls(self) -> tuple[str, str, str]:
        return crypto.decrypt(self.tls_ca), crypto.decrypt(self.tls_cert), crypto.decrypt(self.tls_key)

    def eru_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "endpoint": self.endpoint,
            "podname": self.pod.name,
            "labels": self.labels,
        }
        if self.bypass:
            data["bypass"] = True
        return data

    def resource_json(self) -> dict[str, Any]:
        return {
            "capacity": {
                "cpu": self.cpu_capacity,
                "cpu_map": self.cpu_map,
                "memory": self.memory,
                "numa_memory": {},
                "numa": {},
            },
            "usage": {
                "cpu": self.used_cpu,
                "cpu_map": {core: self.used_cpu_map.get(core, 0) for core in self.cpu_map},
                "memory": self.used_memory,
                "numa_memory": {},
                "numa": {},
            },
        }


class Deployment(models.Model):
    class Strategy(models.TextChoices):
        AUTO = "AUTO"
        FILL = "FILL"
        EACH = "EACH"
        GLOBAL = "GLOBAL"
        DRAINED = "DRAINED"

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        PARTIAL = "partial"
        FAILED = "failed"
        CANCELLED = "cancelled"  # by an operator or by its timeout (`error` says which)

    class Kind(models.TextChoices):
        DEPLOY = "deploy"  # new workloads, placed by a strategy
        REPLACE = "replace"  # new containers for existing workloads, on their nodes, batch by batch

    # A deployment's history outlives its pod: removing the pod empties `pod`, `pod_name` stays.
    pod = models.ForeignKey(Pod, null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments")
    pod_name = models.CharField(max_length=64, blank=True, db_index=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.DEPLOY)
    app = models.CharField(max_length=64)
    entrypoint = models.CharField(max_length=64)
    image = models.CharField(max_length=255)
    spec = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    strategy = models.CharField(max_length=8, choices=Strategy.choices, default=Strategy.AUTO)
    count = models.PositiveIntegerField()
    nodes_limit = models.PositiveIntegerField(default=0)
    node_names = models.JSONField(default=list, blank=True)
    node_labels = models.JSONField(default=dict, blank=True)
    plan = models.JSONField(default=dict)
    total = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    batch = models.PositiveIntegerField(default=0, help_text="replace: workloads at a time (0: all)")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    timeout = models.PositiveIntegerField(null=True, blank=True, help_text="seconds before it is cancelled")
    error = models.TextField(blank=True)  # why it was cancelled or stopped early
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.app}/{self.entrypoint} #{self.pk}"

    @property
    def done_count(self) -> int:
        return self.succeeded + self.failed

    @property
    def percent(self) -> int:
        return round(100 * self.done_count / self.total) if self.total else 100

    @property
    def is_final(self) -> bool:
        return self.state != self.State.RUNNING


class LambdaRun(models.Model):
    """A one-off command (Eru's lambda): a deployment whose workloads run their command to its end in
    throw-away containers, removed whatever the end. Its output goes to a bounded Redis stream as it
    comes (clusters.lambda_output) and its last OUTPUT_KEPT bytes stay here, with each exit code."""

    OUTPUT_KEPT = 16 << 10

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"  # every container ran to its end (exit codes say how)
        FAILED = "failed"  # a container could not be made or started, or its worker was lost
        TIMEOUT = "timeout"
        CANCELLED = "cancelled"

    deployment = models.OneToOneField("Deployment", on_delete=models.CASCADE, related_name="lambda_run")
    timeout = models.PositiveIntegerField(help_text="seconds before it is killed")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    exit_code = models.IntegerField(null=True, blank=True, help_text="the first non-zero exit code, else 0")
    exit_codes = models.JSONField(default=dict, blank=True)  # workload name -> exit code (None: none)
    ends = models.JSONField(default=dict, blank=True)  # workload name -> how it ended (State values)
    output = models.TextField(blank=True)  # the last OUTPUT_KEPT bytes, each line after its workload's seq
    cancel_requested = models.BooleanField(default=False)
    stdin = models.TextField(blank=True, help_text="the command's standard input, then its end")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"lambda #{self.pk} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state != self.State.RUNNING


class Workload(models.Model):
    """A workload on two axes: `state`, the lifecycle the portal drives (what it was asked for and got
    done), and `status`, what Docker last showed of its container (observed, by the sweep or the
    agent). Every lifecycle state but failed holds the allocation, whatever the observed status: a
    container that exited, crashed or went missing keeps its cpu and memory until an operator removes
    the workload (as in Eru), so a restart finds them free; the node page shows how much is held so."""

    class State(models.TextChoices):
        PENDING = "pending"
        CREATING = "creating"
        RUNNING = "running"
        STOPPED = "stopped"
        REMOVING = "removing"
        FAILED = "failed"

    class Status(models.TextChoices):
        UNOBSERVED = "", "not observed yet"
        RUNNING = "running", "running"
        EXITED = "exited", "exited"  # with exit_code
        OOM_KILLED = "oom_killed", "OOM-killed"
        RESTARTING = "restarting", "restarting"  # by Docker's restart policy; restart_count counts
        PAUSED = "paused", "paused"
        MISSING = "missing", "missing (container gone)"
        UNKNOWN = "unknown", "unknown (node unreachable)"

    class Health(models.TextChoices):
        HEALTHY = "healthy", "healthy"
        UNHEALTHY = "unhealthy", "unhealthy"
        NONE = "none", "none (no health check)"
        UNKNOWN = "unknown", "unknown"

    # States in which the workload still holds its allocation on the node.
    HOLDING = (State.PENDING, State.CREATING, State.RUNNING, State.STOPPED, State.REMOVING)
    # States whose container the sweep and the agent observe (the others belong to a worker).
    OBSERVED = (State.RUNNING, State.STOPPED)
    # Observed statuses of a container that does not run as it should.
    DOWN = (Status.EXITED, Status.OOM_KILLED, Status.RESTARTING)
    # States a worker moves on from by itself.
    BUSY = (State.PENDING, State.CREATING, State.REMOVING)

    name = models.CharField(max_length=200, unique=True)
    pod = models.ForeignKey(Pod, on_delete=models.PROTECT, related_name="workloads")
    # Indexed by its first place in (node, state, updated_at): one index fewer to keep per row made.
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="workloads", db_index=False)
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="workloads"
    )
    app = models.CharField(max_length=64)
    entrypoint = models.CharField(max_length=64)
    seq = models.PositiveIntegerField(default=0)
    image = models.CharField(max_length=255)
    command = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=list, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    network = models.CharField(max_length=64, blank=True)
    cpu_request = models.FloatField(default=0.0)
    cpu_limit = models.FloatField(default=0.0)
    memory_request = models.BigIntegerField(default=0)
    memory_limit = models.BigIntegerField(default=0)
    cpu_bind = models.BooleanField(default=False)
    cpu_map = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    container_id = models.CharField(max_length=64, blank=True)
    # A start/stop/restart asked for and not yet carried out by a worker ("" = none).
    action = models.CharField(max_length=8, blank=True)
    # The claim on work in progress, by task id (kept across retries and redelivery) and when: the
    # creation task's, or the id a start/stop/restart request made for its message.
    task_id = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The Celery worker (its hostname) holding the claim: once its liveness key in etcd is gone, the
    # claim is lost sooner than by age (services.workloads.lost_claims); "": not known.
    claimed_by = models.CharField(max_length=200, blank=True)
    networks = models.JSONField(default=dict, blank=True)  # network name -> IP
    error = models.TextField(blank=True)
    # Observed (written on transitions only; when it was last observed is the node's observed_at).
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNOBSERVED, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    restart_count = models.PositiveIntegerField(default=0)
    health = models.CharField(max_length=9, choices=Health.choices, default=Health.NONE)
    ports = models.JSONField(default=list, blank=True)  # published: [{"ip", "private", "public", "type"}]
    status_since = models.DateTimeField(null=True, blank=True)
    health_since = models.DateTimeField(null=True, blank=True)
    # Eru's health check (tcp_ports, http_port, url, code); null: none, health stays "none".
    healthcheck = models.JSONField(null=True, blank=True)
    # Eru's container options as the deploy asked for them (schema.DeployRequest.container_options).
    options = models.JSONField(default=dict, blank=True)
    # A lambda's workload: its container runs its command to the end and is removed (agents/lambdas.py).
    lambda_run = models.ForeignKey(
        LambdaRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="workloads", db_index=False
    )
    # A replacement (deployment of kind replace): the workload it replaces, on the same node with the
    # same resources. While the old row is there it holds the allocation, not this one (a replaced
    # workload counts once); when the old row goes (replaced), this field empties and this one holds.
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replacements", db_index=False
    )
    # The team on whose quota it runs (the deployer's, chosen when they are in several); None: no team.
    team = models.ForeignKey(  # indexed first in workload_team_use
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["app", "entrypoint", "node"]),
            # The sweep's question, every few seconds: did any observed row of these nodes change?
            models.Index(fields=["node", "state", "updated_at"]),
            # The re-send's question, every 5 s: which start/stop/restart requests wait? (Few rows do.)
            models.Index(fields=["action"], condition=~models.Q(action=""), name="workload_action_asked"),
            # Few rows are a lambda's or a replacement: indexes of those only (a deploy of 10,000 rows
            # adds nothing to them).
            models.Index(
                fields=["lambda_run"], condition=models.Q(lambda_run__isnull=False), name="workload_lambda"
            ),
            models.Index(
                fields=["replaces"], condition=models.Q(replaces__isnull=False), name="workload_replaces"
            ),
            # A quota's use (services.quotas.team_use), read on every deploy from this index alone.
            models.Index(
                fields=["team", "pod", "state", "replaces", "cpu_request", "memory_request"],
                name="workload_team_use",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def holding(cls) -> models.Q:
        """The rows that hold an allocation on their node: a holding state, and not a replacement that
        borrows its old workload's (see `borrows`). A node's usage is the sum of these rows."""
        return models.Q(state__in=cls.HOLDING, replaces__isnull=True)

    @property
    def holds_resources(self) -> bool:
        return self.state in self.HOLDING and not self.borrows

    @property
    def borrows(self) -> bool:
        """A replacement whose old workload is still there: that one holds the allocation."""
        return self.replaces_id is not None

    @property
    def is_busy(self) -> bool:
        """A worker will change this workload soon: pages showing it keep polling."""
        return self.state in self.BUSY or bool(self.action)

    @property
    def short_id(self) -> str:
        return self.container_id[:12]

    @property
    def status_label(self) -> str:
        """The observed status as people read it: "exited (5)", "restarting (3 restarts)"."""
        if self.status == self.Status.EXITED:
            return f"exited ({self.exit_code})" if self.exit_code is not None else "exited"
        if self.status == self.Status.RESTARTING:
            return f"restarting ({self.restart_count} restarts)"
        return str(self.get_status_display())

    @property
    def healthy(self) -> bool:
        """Eru's `healthy`: running, and its health check passes (or it has none)."""
        return self.status == self.Status.RUNNING and self.health in (self.Health.HEALTHY, self.Health.NONE)

    def status_json(self) -> dict[str, Any]:
        """Eru's StatusMeta, as its agent writes it under /status/… (false and empty fields left out)."""
        data: dict[str, Any] = {"id": self.container_id}
        if self.networks:
            data["networks"] = self.networks
        if self.status == self.Status.RUNNING:
            data["running"] = True
        if self.healthy:
            data["healthy"] = True
        return data

    def eru_json(self) -> dict[str, Any]:
        return {
            "id": self.container_id,
            "name": self.name,
            "podname": self.pod.name,
            "nodename": self.node.name,
            "resources": {
                "cpumem": {
                    "cpu_request": self.cpu_request,
                    "cpu_limit": self.cpu_limit,
                    "memory_request": self.memory_request,
                    "memory_limit": self.memory_limit,
                    "cpu_map": self.cpu_map,
                    "numa_memory": {},
                    "numa_node": "",
                }
            },
            # Secrets: only with ERU_ETCD_WORKLOAD_ENV (etcd's readers would read them; see settings).
            "env": self.env if settings.ERU_ETCD_WORKLOAD_ENV else [],
            "image": self.image,
            "labels": self.labels,
            "create_time": int(self.created_at.timestamp()),
        }


class Dissociated(models.Model):
    """A container the portal forgot on purpose (Eru's dissociate): it keeps running, unmanaged, and
    its allocation went back to the node. Docker cannot drop its ERU=1 label, so it is remembered
    here: reconcile does not remove it as an orphan and the drift report leaves it out. The row goes
    when the container is no longer there."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="dissociated")
    container_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    app = models.CharField(max_length=64)
    entrypoint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["node", "container_id"], name="unique_dissociated")]

    def __str__(self) -> str:
        return f"{self.name} on {self.node_id}"


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        """The audit vocabulary, `<entity>.<verb>`: what an actor asked for in the present tense
        (`workload.stop`), what the system then saw happen in the past tense (`workload.stopped`)."""

        POD_ADD = "pod.add", "pod added"
        POD_REMOVE = "pod.remove", "pod removed"
        POD_POLICY = "pod.policy", "pod spec policy set"
        LAMBDA_RUN = "lambda.run", "lambda run"
        LAMBDA_CANCEL = "lambda.cancel", "lambda cancel asked"
        LAMBDA_ENDED = "lambda.ended", "lambda ended"
        MEMBER_SET = "member.set", "member role set"
        MEMBER_REMOVE = "member.remove", "member removed"
        TEAM_ADD = "team.add", "team added"
        TEAM_REMOVE = "team.remove", "team removed"
        TEAM_MEMBER_ADD = "team.member_add", "user added to a team"
        TEAM_MEMBER_REMOVE = "team.member_remove", "user taken out of a team"
        TEAM_ROLE_SET = "team.role_set", "team's pod role set"
        TEAM_ROLE_REMOVE = "team.role_remove", "team's pod role removed"
        QUOTA_SET = "quota.set", "quota set"
        QUOTA_REMOVE = "quota.remove", "quota removed"
        USER_ADD = "user.add", "user added"
        USER_SET = "user.set", "user changed (staff, superuser, active)"
        USER_REMOVE = "user.remove", "user removed"
        SECRET_REVEAL = "secret.reveal", "environment values shown"
        NODE_ADD = "node.add", "node added"
        NODE_SET = "node.set", "node changed"
        NODE_UP = "node.up", "node set up"
        NODE_DOWN = "node.down", "node set down"
        NODE_REMOVE = "node.remove", "node removed"
        NODE_UNREACHABLE = "node.unreachable", "node's engine stopped answering"
        NODE_REACHABLE = "node.reachable", "node's engine answers again"
        NODE_AGENT = "node.agent", "node's agent reports: the agent manages the node"
        NODE_AGENT_CLEAR = "node.agent_clear", "node handed back to the central sweep"
        NODE_AGENT_CONFLICT = "node.agent_conflict", "two agents report for one node"
        NODE_SECRET_ROTATE = "node.secret_rotate", "node agent secret made"
        NODE_SECRET_REVOKE = "node.secret_revoke", "node agent secret revoked"
        TOKEN_CREATE = "token.create", "API token created"
        TOKEN_REVOKE = "token.revoke", "API token revoked"
        DEPLOYMENT_CREATE = "deployment.create", "deployment created"
        DEPLOYMENT_CANCEL = "deployment.cancel", "deployment cancelled"
        DEPLOYMENT_TIMEOUT = "deployment.timeout", "deployment timed out"
        NODE_RESOURCE_FIX = "node.resource_fix", "node usage recounted from its workloads"
        WORKLOAD_REPLACE = "workload.replace", "workload replacement asked"
        WORKLOAD_REPLACED = "workload.replaced", "workload replaced by a new container"
        WORKLOAD_REPLACE_FAILED = "workload.replace_failed", "replacement failed, the old one restored"
        WORKLOAD_REALLOC = "workload.realloc", "workload resources changed"
        WORKLOAD_DISSOCIATE = "workload.dissociate", "workload forgotten, its container kept"
        WORKLOAD_EXEC = "workload.exec", "command run in a workload"
        WORKLOAD_START = "workload.start", "workload start asked"
        WORKLOAD_STOP = "workload.stop", "workload stop asked"
        WORKLOAD_RESTART = "workload.restart", "workload restart asked"
        WORKLOAD_REMOVE = "workload.remove", "workload removal asked"
        WORKLOAD_CREATED = "workload.created", "container created and running"
        WORKLOAD_FAILED = "workload.failed", "container creation failed"
        WORKLOAD_STARTED = "workload.started", "container running again"
        WORKLOAD_STOPPED = "workload.stopped", "container stopped"
        WORKLOAD_REMOVED = "workload.removed", "container removed"
        WORKLOAD_EXITED = "workload.exited", "container exited by itself"
        WORKLOAD_OOM_KILLED = "workload.oom_killed", "container OOM-killed"
        WORKLOAD_RESTARTING = "workload.restarting", "container crashing, Docker restarting it"
        WORKLOAD_MISSING = "workload.missing", "container removed outside the portal"
        WORKLOAD_HEALTHY = "workload.healthy", "health check passes"
        WORKLOAD_UNHEALTHY = "workload.unhealthy", "health check fails"
        WORKLOAD_ADOPTED = "workload.adopted", "container found for a creation left mid-way"

    class Via(models.TextChoices):
        UI = "ui"
        API = "api"
        CLI = "cli"
        ADMIN = "admin"
        GRPC = "grpc"
        SYSTEM = "system"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    via = models.CharField(max_length=8, choices=Via.choices)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, choices=Action.choices, db_index=True)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64, blank=True)
    target_name = models.CharField(max_length=200, blank=True)
    pod = models.ForeignKey(Pod, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    pod_name = models.CharField(max_length=64, blank=True, db_index=True)  # kept when the pod goes
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.target_name}"


class ApiToken(models.Model):
    """A personal API token; only its SHA-256 digest is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never")
    read_only = models.BooleanField(default=False, help_text="reads only: every write is refused")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Usage(models.Model):
    """What was in use over one step of time (bucket `at`, `step` seconds long): CPU in cores and
    memory in bytes, averaged over the `n` samples taken in it. Two steps are kept: 15 s for an
    hour and 5 min for a day (clusters.services.usage); older rows are pruned, so the history of a
    workload is at most 240 + 288 rows."""

    step = models.PositiveSmallIntegerField()
    at = models.DateTimeField()
    cpu = models.FloatField(null=True)  # None: no rate yet (a first sample)
    memory = models.BigIntegerField(default=0)
    n = models.PositiveIntegerField(default=1)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} +{self.step}s cpu {self.cpu} memory {self.memory}"


class WorkloadUsage(Usage):
    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="usage")
    # The last sample's counter and time (Docker's), so the next poll's one-shot sample gives a rate.
    cpu_ns = models.BigIntegerField(default=0)
    sampled = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workload", "step", "at"], name="workload_usage_once")]
        indexes = [models.Index(fields=["step", "at"])]


class NodeUsage(Usage):
    """A node's ERU containers together."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="usage")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "step", "at"], name="node_usage_once")]
        indexes = [models.Index(fields=["step", "at"])]


class IdempotentRequest(models.Model):
    """A creating request's first answer, kept 24 h under the caller's `Idempotency-Key` so that a
    retry answers it again instead of doing the work twice (clusters.idempotency). `status` 0: the
    first request is still being answered."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    body_digest = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField(default=0)
    response = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_user_key")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}] → {self.status or 'pending'}"
