"""What is kept of a series job's study (original, de-identified copy, nothing) and its SR and KOS."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("series", "0002_seriesjob_study"),
    ]

    operations = [
        migrations.AddField(
            model_name="seriesjob",
            name="upload",
            field=models.CharField(
                choices=[
                    ("original", "The original upload"),
                    ("deidentified", "A de-identified copy"),
                    ("deleted", "Nothing"),
                ],
                default="original",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="seriesjob",
            name="sr_bytes",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="seriesjob",
            name="kos_bytes",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
