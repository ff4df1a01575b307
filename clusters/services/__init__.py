"""The only write path. Every state change of pods, nodes, deployments, workloads, memberships and
tokens happens in this package: validate → permission → plan → allocate → AuditEvent, in one
transaction; etcd writes and Celery tasks follow after commit. Functions are keyword-only; `actor`
says who, and through what. Views, the API, the admin, the CLI and the workers all call these."""

from clusters.services._common import SYSTEM, Actor, actor_from_request, invalid
from clusters.services.deploy import (
    MAX_CPU,
    MAX_DEPLOY_COUNT,
    MAX_NODES_LIMIT,
    DeploySpec,
    capacity_preview,
    deploy,
    plan_deploy,
    validate_deploy,
)
from clusters.services.nodes import (
    available_nodes,
    node_add,
    node_client,
    node_record_probe,
    node_remove,
    node_resources,
    node_set,
)
from clusters.services.pods import member_remove, member_set, pod_add, pod_remove
from clusters.services.tokens import token_create, token_revoke
from clusters.services.workloads import (
    CONTROL_ACTIONS,
    clear_stale_actions,
    container_spec,
    stale_workloads,
    workload_claim,
    workload_control,
    workload_failed,
    workload_record_state,
    workload_remove,
    workload_remove_failed,
    workload_removed,
    workload_started,
)

__all__ = [
    "CONTROL_ACTIONS",
    "MAX_CPU",
    "MAX_DEPLOY_COUNT",
    "MAX_NODES_LIMIT",
    "SYSTEM",
    "Actor",
    "DeploySpec",
    "actor_from_request",
    "available_nodes",
    "capacity_preview",
    "clear_stale_actions",
    "container_spec",
    "deploy",
    "invalid",
    "member_remove",
    "member_set",
    "node_add",
    "node_client",
    "node_record_probe",
    "node_remove",
    "node_resources",
    "node_set",
    "plan_deploy",
    "pod_add",
    "pod_remove",
    "stale_workloads",
    "token_create",
    "token_revoke",
    "validate_deploy",
    "workload_claim",
    "workload_control",
    "workload_failed",
    "workload_record_state",
    "workload_remove",
    "workload_remove_failed",
    "workload_removed",
    "workload_started",
]
