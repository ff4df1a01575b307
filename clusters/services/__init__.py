"""The only write path. Every state change of pods, nodes, deployments, workloads, memberships, teams,
users and tokens happens in this package: validate → permission → plan → allocate → AuditEvent, in one
transaction; etcd writes and Celery tasks follow after commit. Functions are keyword-only and named
`<entity>_<verb>`; `actor` says who, and through what. Views, the API, the admin, the CLI and the
workers all call these. Reads that write nothing are in clusters.selectors."""

from clusters.services._common import SYSTEM, Actor, actor_from_request
from clusters.services.agent import (
    Report,
    node_agent_clear,
    node_heartbeat,
    node_lost,
    node_report,
    node_secret_revoke,
    node_secret_rotate,
)
from clusters.services.audit import audit_prune
from clusters.services.cancel import deployment_cancel, deployment_expire
from clusters.services.deploy import (
    DeploySpec,
    deployment_capacity,
    deployment_create,
    deployment_plan,
    deployment_validate,
    placement_validate,
)
from clusters.services.dissociate import dissociation_candidates, workload_dissociate
from clusters.services.exec import workload_exec
from clusters.services.lambdas import lambda_cancel, lambda_create, lambda_workload_done
from clusters.services.nodes import node_add, node_remove, node_resource_fix, node_set
from clusters.services.observe import Seen, node_contact, node_observe
from clusters.services.pods import member_remove, member_set, pod_add, pod_remove
from clusters.services.policy import POLICY_FIELDS, pod_policy_set, policy_of
from clusters.services.quotas import (
    QuotaRow,
    deploy_team,
    quota_clean,
    quota_remove,
    quota_rows,
    quota_set,
    teams_of,
    visible_quota_rows,
)
from clusters.services.realloc import Change, workload_realloc
from clusters.services.replace import (
    replacements_stuck,
    was_running,
    workload_replace,
    workload_replace_failed,
    workload_replaced,
)
from clusters.services.teams import (
    team_add,
    team_member_add,
    team_member_remove,
    team_remove,
    team_role_remove,
    team_role_set,
)
from clusters.services.tokens import token_create, token_revoke
from clusters.services.usage import Use, usage_prune, usage_record
from clusters.services.users import USER_FIELDS, user_add, user_password_set, user_remove, user_set
from clusters.services.workloads import (
    CONTROL_ACTIONS,
    container_orphan_removed,
    workload_claim,
    workload_clear_stale_actions,
    workload_collect_stale,
    workload_control,
    workload_control_claim,
    workload_failed,
    workload_record_state,
    workload_remove,
    workload_remove_failed,
    workload_removed,
    workload_resend_actions,
    workload_started,
)

__all__ = [
    "CONTROL_ACTIONS",
    "SYSTEM",
    "Actor",
    "Report",
    "Seen",
    "DeploySpec",
    "actor_from_request",
    "audit_prune",
    "Change",
    "deployment_cancel",
    "deployment_expire",
    "dissociation_candidates",
    "workload_dissociate",
    "workload_realloc",
    "replacements_stuck",
    "was_running",
    "workload_replace",
    "workload_replace_failed",
    "workload_replaced",
    "deployment_capacity",
    "deployment_create",
    "deployment_plan",
    "deployment_validate",
    "member_remove",
    "member_set",
    "node_add",
    "node_agent_clear",
    "node_heartbeat",
    "node_lost",
    "node_report",
    "node_secret_revoke",
    "node_secret_rotate",
    "node_contact",
    "node_observe",
    "node_remove",
    "node_resource_fix",
    "node_set",
    "placement_validate",
    "lambda_cancel",
    "lambda_create",
    "lambda_workload_done",
    "pod_add",
    "pod_policy_set",
    "POLICY_FIELDS",
    "policy_of",
    "pod_remove",
    "QuotaRow",
    "deploy_team",
    "quota_clean",
    "quota_remove",
    "quota_rows",
    "quota_set",
    "teams_of",
    "visible_quota_rows",
    "team_add",
    "team_member_add",
    "team_member_remove",
    "team_remove",
    "team_role_remove",
    "team_role_set",
    "token_create",
    "token_revoke",
    "USER_FIELDS",
    "user_add",
    "user_password_set",
    "user_remove",
    "user_set",
    "container_orphan_removed",
    "workload_claim",
    "workload_clear_stale_actions",
    "workload_collect_stale",
    "workload_control",
    "workload_control_claim",
    "workload_exec",
    "workload_failed",
    "Use",
    "usage_prune",
    "usage_record",
    "workload_record_state",
    "workload_remove",
    "workload_remove_failed",
    "workload_resend_actions",
    "workload_removed",
    "workload_started",
]
