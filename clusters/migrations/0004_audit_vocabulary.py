"""The audit vocabulary becomes `<entity>.<verb>`: old rows are renamed to the new actions."""

from django.db import migrations, models

# In order: "workload.started" (created) must move before "workload.running" takes its name.
RENAMES = [
    ("deploy", "deployment.create"),
    ("workload.started", "workload.created"),
    ("workload.running", "workload.started"),
]


def forward(apps, schema_editor):
    AuditEvent = apps.get_model("clusters", "AuditEvent")
    for old, new in RENAMES:
        AuditEvent.objects.filter(action=old).update(action=new)


def backward(apps, schema_editor):
    AuditEvent = apps.get_model("clusters", "AuditEvent")
    for old, new in reversed(RENAMES):
        AuditEvent.objects.filter(action=new).update(action=old)


class Migration(migrations.Migration):
    dependencies = [("clusters", "0003_workload_action")]

    operations = [
        migrations.RunPython(forward, backward),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("pod.add", "pod added"),
                    ("pod.remove", "pod removed"),
                    ("member.set", "member role set"),
                    ("member.remove", "member removed"),
                    ("node.add", "node added"),
                    ("node.set", "node changed"),
                    ("node.up", "node set up"),
                    ("node.down", "node set down"),
                    ("node.remove", "node removed"),
                    ("token.create", "API token created"),
                    ("token.revoke", "API token revoked"),
                    ("deployment.create", "deployment created"),
                    ("workload.start", "workload start asked"),
                    ("workload.stop", "workload stop asked"),
                    ("workload.restart", "workload restart asked"),
                    ("workload.remove", "workload removal asked"),
                    ("workload.created", "container created and running"),
                    ("workload.failed", "container creation failed"),
                    ("workload.started", "container running again"),
                    ("workload.stopped", "container stopped"),
                    ("workload.removed", "container removed"),
                ],
                db_index=True,
                max_length=64,
            ),
        ),
    ]
