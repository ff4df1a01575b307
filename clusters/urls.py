from django.urls import path

from clusters import audit_views, lambda_views, node_views, ops_views, team_views, token_views, views
from clusters.exec_views import workload_exec

app_name = "clusters"

urlpatterns = [
    path("", views.pod_list, name="pod-list"),
    path("pods/<str:name>/", views.pod_detail, name="pod-detail"),
    path("pods/<str:name>/deploy/", views.deploy, name="deploy"),
    path("nodes/<str:name>/", views.node_detail, name="node-detail"),
    path("nodes/<str:name>/down/", views.node_set_bypass, {"bypass": True}, name="node-down"),
    path("nodes/<str:name>/up/", views.node_set_bypass, {"bypass": False}, name="node-up"),
    path("nodes/<str:name>/agent/<str:action>/", views.node_agent, name="node-agent"),
    path("nodes/<str:name>/capacity/", node_views.node_capacity, name="node-capacity"),
    path("nodes/<str:name>/resource/", node_views.node_resource, name="node-resource"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment-detail"),
    path("deployments/<int:pk>/logs/", views.deployment_log_events, name="deployment-logs"),
    path("deployments/<int:pk>/down/", views.deployment_down, name="deployment-down"),
    path("deployments/<int:pk>/cancel/", ops_views.deployment_cancel, name="deployment-cancel"),
    path("workloads/<int:pk>/", views.workload_detail, name="workload-detail"),
    path("workloads/<int:pk>/control/", views.workload_control, name="workload-control"),
    path("workloads/<int:pk>/logs/", views.workload_log_events, name="workload-logs"),
    path("workloads/<int:pk>/remove/", views.workload_remove, name="workload-remove"),
    path("workloads/<int:pk>/exec/", workload_exec, name="workload-exec"),
    path("workloads/<int:pk>/realloc/", ops_views.workload_realloc, name="workload-realloc"),
    path("workloads/<int:pk>/replace/", ops_views.workload_replace, name="workload-replace"),
    path("workloads/<int:pk>/dissociate/", ops_views.workload_dissociate, name="workload-dissociate"),
    path("audit/", audit_views.audit_list, name="audit-list"),
    path("audit/<int:pk>/", audit_views.audit_detail, name="audit-detail"),
    path("audit/export.<str:fmt>", audit_views.audit_export, name="audit-export"),
    path("pods/<str:name>/access/", team_views.pod_access, name="pod-access"),
    path("pods/<str:name>/access/member/", team_views.pod_member_set, name="pod-member-set"),
    path("pods/<str:name>/access/member/remove/", team_views.pod_member_remove, name="pod-member-remove"),
    path("pods/<str:name>/access/team/", team_views.pod_team_set, name="pod-team-set"),
    path("pods/<str:name>/access/team/remove/", team_views.pod_team_remove, name="pod-team-remove"),
    path("teams/", team_views.team_list, name="team-list"),
    path("teams/<str:name>/", team_views.team_detail, name="team-detail"),
    path("teams/<str:name>/members/remove/", team_views.team_member_remove, name="team-member-remove"),
    path("teams/<str:name>/remove/", team_views.team_remove, name="team-remove"),
    path("tokens/", token_views.token_list, name="token-list"),
    path("tokens/<int:pk>/revoke/", token_views.token_revoke, name="token-revoke"),
    path("pods/<str:name>/lambda/", lambda_views.lambda_run, name="lambda-run"),
    path("lambdas/", lambda_views.lambda_list, name="lambda-list"),
    path("lambdas/<int:pk>/", lambda_views.lambda_detail, name="lambda-detail"),
    path("lambdas/<int:pk>/output/", lambda_views.lambda_output_events, name="lambda-output"),
    path("lambdas/<int:pk>/cancel/", lambda_views.lambda_cancel, name="lambda-cancel"),
]
