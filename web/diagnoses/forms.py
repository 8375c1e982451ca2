"""Forms of the diagnoses pages: the upload and the history filter."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import RegexValidator

from servicekit.diseases import DISEASE_PATTERN

# The gateway's rule for disease names.
DISEASE_NAME = RegexValidator(rf"^{DISEASE_PATTERN}$", "Unknown kind of diagnosis.")
ACCEPTED_TYPES = ("image/jpeg", "image/png")


class UploadForm(forms.Form):
    """One photo of a skin lesion; its content is checked by services, not by this form."""

    image = forms.FileField(
        label="Photo of the skin lesion",
        # An empty file reaches the image checks, which say so in the same words as the API.
        allow_empty_file=True,
        widget=forms.ClearableFileInput(attrs={"accept": ",".join(ACCEPTED_TYPES)}),
        error_messages={"required": "Choose a photo to upload."},
    )
    disease = forms.CharField(
        initial="skin", widget=forms.HiddenInput, validators=[DISEASE_NAME], required=False
    )

    def clean_disease(self) -> str:
        """Returns the disease, "skin" when the form sent none."""
        return str(self.cleaned_data.get("disease") or "skin")


class HistoryFilterForm(forms.Form):
    """Narrows the history to one label and a range of days."""

    label = forms.ChoiceField(label="Result", required=False)
    date_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, labels: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = [("", "All results"), *labels]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        """Refuses a range that ends before it starts."""
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned
