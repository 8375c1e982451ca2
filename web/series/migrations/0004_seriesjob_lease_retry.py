"""Series job leases (a fence per claim) and automatic retries with backoff."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("series", "0003_seriesjob_upload_reports"),
    ]

    operations = [
        migrations.AddField(
            model_name="seriesjob",
            name="lease_token",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="seriesjob",
            name="lease_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="seriesjob",
            name="retries",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="seriesjob",
            name="retry_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
