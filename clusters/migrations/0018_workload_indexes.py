# Fewer indexes to keep per workload row made (a deploy of 10,000 rows keeps each 10,000 times): the
# node FK's own index goes (the (node, state, updated_at) index leads with it), so does the team FK's
# (workload_team_use leads with it), and those of lambda_run and replaces become partial (few rows
# have either). The FK indexes are dropped by name, not by AlterField, which on SQLite would copy the
# whole table once per field.

import django.db.models.deletion
from django.db import migrations, models

DROPPED = {  # index: column
    "clusters_workload_lambda_run_id_c050f393": "lambda_run_id",
    "clusters_workload_node_id_c4f94dd6": "node_id",
    "clusters_workload_replaces_id_e5e974cd": "replaces_id",
    "clusters_workload_team_id_1258180c": "team_id",
}


class Migration(migrations.Migration):

    dependencies = [
        ('clusters', '0017_workload_action_index'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='workload',
                    name='lambda_run',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='workloads', to='clusters.lambdarun'),
                ),
                migrations.AlterField(
                    model_name='workload',
                    name='node',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='workloads', to='clusters.node'),
                ),
                migrations.AlterField(
                    model_name='workload',
                    name='replaces',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='replacements', to='clusters.workload'),
                ),
                migrations.AlterField(
                    model_name='workload',
                    name='team',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='clusters.team'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "clusters_workload" ("{column}")',
                )
                for index, column in DROPPED.items()
            ],
        ),
        migrations.AddIndex(
            model_name='workload',
            index=models.Index(condition=models.Q(('lambda_run__isnull', False)), fields=['lambda_run'], name='workload_lambda'),
        ),
        migrations.AddIndex(
            model_name='workload',
            index=models.Index(condition=models.Q(('replaces__isnull', False)), fields=['replaces'], name='workload_replaces'),
        ),
        migrations.AddIndex(
            model_name='workload',
            index=models.Index(fields=['team', 'pod', 'state', 'replaces', 'cpu_request', 'memory_request'], name='workload_team_use'),
        ),
    ]
