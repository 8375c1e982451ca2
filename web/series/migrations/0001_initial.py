"""The series job table."""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SeriesJob",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("disease", models.CharField(default="mri", max_length=63)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=16,
                    ),
                ),
                (
                    "stage",
                    models.CharField(
                        choices=[
                            ("waiting", "Waiting for the worker"),
                            ("sending", "Sending the series to the analysis service"),
                            ("analysing", "Analysing"),
                            ("thumbnails", "Preparing the slice viewer"),
                            ("finished", "Finished"),
                        ],
                        default="waiting",
                        max_length=16,
                    ),
                ),
                ("progress", models.FloatField(default=0.0)),
                ("zip_name", models.CharField(max_length=200)),
                ("zip_bytes", models.PositiveBigIntegerField()),
                ("slices", models.JSONField(blank=True, default=list)),
                ("positive_slices", models.JSONField(blank=True, default=list)),
                ("slice_count", models.PositiveIntegerField(default=0)),
                ("thumbnail_count", models.PositiveIntegerField(default=0)),
                ("model_name", models.CharField(blank=True, max_length=200)),
                ("model_version", models.CharField(blank=True, max_length=100)),
                ("demo_model", models.BooleanField(default=False)),
                ("request_id", models.CharField(blank=True, max_length=128)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("worker", models.CharField(blank=True, max_length=200)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("error_code", models.CharField(blank=True, max_length=32)),
                ("error_message", models.CharField(blank=True, max_length=500)),
                ("retryable", models.BooleanField(default=False)),
                ("timings", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="series_jobs",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ("-created_at",),
                "indexes": [
                    models.Index(fields=["user", "-created_at"], name="series_user_created"),
                    models.Index(fields=["status", "created_at"], name="series_status_created"),
                ],
            },
        ),
    ]
