# Issue 13: a deployment outlives its pod (pod_name kept), and no audit row keeps an env value in clear.

import django.db.models.deletion
from django.db import migrations, models
from django.utils.crypto import salted_hmac

# As clusters.secrets writes them (frozen here: a migration must not change with the app's code).
_SALT = "clusters.secrets.env"
_PREFIX = "hmac-sha256:"


def _digest(entry):
    return _PREFIX + salted_hmac(_SALT, entry, algorithm="sha256").hexdigest()[:16]


def _digest_env(env):
    out = {}
    for entry in env:
        text = entry if isinstance(entry, str) else repr(entry)
        key, eq, _ = text.partition("=")
        out[key] = _digest(text) if eq else ""
    return out


def _scrub(data):
    """Every env list of KEY=value entries, at any depth, becomes {KEY: digest}; raw spec text a digest."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k == "env" and isinstance(v, list) and any(isinstance(e, str) and "=" in e for e in v):
                out[k] = _digest_env(v)
            elif k == "spec" and isinstance(v, str):
                out[k] = _digest(v)
            else:
                out[k] = _scrub(v)
        return out
    if isinstance(data, list):
        return [_scrub(v) for v in data]
    return data


def _audit_digests(apps, schema_editor):
    AuditEvent = apps.get_model("clusters", "AuditEvent")
    changed = []
    for event in AuditEvent.objects.only("pk", "before", "after").iterator(chunk_size=2000):
        before, after = _scrub(event.before), _scrub(event.after)
        if before != event.before or after != event.after:
            event.before, event.after = before, after
            changed.append(event)
        if len(changed) >= 500:
            AuditEvent.objects.bulk_update(changed, ["before", "after"])
            changed = []
    if changed:
        AuditEvent.objects.bulk_update(changed, ["before", "after"])


def _deployment_pod_names(apps, schema_editor):
    Deployment = apps.get_model("clusters", "Deployment")
    Pod = apps.get_model("clusters", "Pod")
    for pk, name in Pod.objects.values_list("pk", "name"):
        Deployment.objects.filter(pod_id=pk).update(pod_name=name)


def _drop_podless(apps, schema_editor):
    """Backwards: a deployment's pod may not be empty again, so those of removed pods go (as they
    did before this migration, with their pod). The audit digests stay digests: the values are gone."""
    apps.get_model("clusters", "Deployment").objects.filter(pod__isnull=True).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('clusters', '0014_teams_quotas_tokens'),
    ]

    operations = [
        migrations.AddField(
            model_name='deployment',
            name='pod_name',
            field=models.CharField(blank=True, db_index=True, max_length=64),
        ),
        migrations.AlterField(
            model_name='deployment',
            name='pod',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='deployments', to='clusters.pod'),
        ),
        migrations.RunPython(_deployment_pod_names, _drop_podless),
        # Not reversible in kind: the values are gone (going back keeps the digests).
        migrations.RunPython(_audit_digests, migrations.RunPython.noop),
    ]
