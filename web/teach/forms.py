"""Forms of the teach pages: a new project, the training settings, the publish name."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from servicekit.diseases import DISEASE_PATTERN
from web.gateway_client import TrainSettings

MIN_LABELS, MAX_LABELS = 2, 10
LABEL_RULE = re.compile(r"^[A-Za-z0-9 _-]{1,40}$")
DISEASE_NAME = RegexValidator(
    rf"^{DISEASE_PATTERN}$", "Use lower-case letters, digits and dashes, starting with a letter."
)


class ProjectCreateForm(forms.Form):
    """A project's name and its 2 to 10 labels, one per line."""

    display_name = forms.CharField(label="Project name", max_length=100)
    labels = forms.CharField(
        label="Labels",
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "thumbs up\nthumbs down"}),
        help_text="One per line, 2 to 10: letters, digits, spaces, - and _ (at most 40 each).",
    )

    def clean_labels(self) -> list[str]:
        """Returns the trimmed labels; refuses too few, too many, repeated or odd ones."""
        labels = [line.strip() for line in str(self.cleaned_data["labels"]).splitlines()]
        labels = [label for label in labels if label]
        if not MIN_LABELS <= len(labels) <= MAX_LABELS:
            raise forms.ValidationError(f"Give {MIN_LABELS} to {MAX_LABELS} labels, one per line.")
        for label in labels:
            if not LABEL_RULE.match(label):
                raise forms.ValidationError(
                    f"“{label[:50]}” is not a label: use letters, digits, spaces, - and _ "
                    "(at most 40)."
                )
        if len({label.casefold() for label in labels}) != len(labels):
            raise forms.ValidationError("Each label may appear only once.")
        return labels


class TrainSettingsForm(forms.Form):
    """How to train; the defaults suit a few dozen webcam frames per label."""

    epochs = forms.IntegerField(label="Epochs", min_value=1, max_value=200, initial=15)
    batch_size = forms.IntegerField(label="Batch size", min_value=1, max_value=256, initial=16)
    learning_rate = forms.FloatField(
        label="Learning rate", min_value=0.000001, max_value=1.0, initial=0.001
    )
    validation_split = forms.FloatField(
        label="Validation split",
        min_value=0.0,
        max_value=0.5,
        initial=0.2,
        help_text="Share of the examples held out to measure accuracy (0 to 0.5).",
    )
    seed = forms.IntegerField(label="Seed", min_value=0, max_value=2**31 - 1, initial=42)

    @classmethod
    def from_message(cls, data: Any) -> TrainSettingsForm:
        """Returns the form bound to a websocket message's settings (defaults where missing)."""
        given = data if isinstance(data, dict) else {}
        values = {name: given.get(name, field.initial) for name, field in cls.base_fields.items()}
        return cls(values)

    def train_settings(self) -> TrainSettings:
        """Returns the validated settings (call after is_valid())."""
        data = self.cleaned_data
        return TrainSettings(
            epochs=data["epochs"],
            batch_size=data["batch_size"],
            learning_rate=data["learning_rate"],
            validation_split=data["validation_split"],
            seed=data["seed"],
        )


class PublishForm(forms.Form):
    """The disease name the trained model is served under."""

    disease = forms.CharField(
        label="Disease name",
        max_length=63,
        validators=[DISEASE_NAME],
        help_text="Lower-case letters, digits and dashes, starting with a letter, e.g. my-rash.",
    )
