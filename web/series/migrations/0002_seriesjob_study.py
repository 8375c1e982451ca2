"""The study a series job read: selected phases, unused series, skipped files."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("series", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="seriesjob",
            name="study",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
