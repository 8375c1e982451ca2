"""Forms of the accounts pages: registration, log-in, profile."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm

from web.accounts.models import User, normalize_email_address

# The one message for every failed log-in: it never says whether the account exists.
INVALID_LOGIN_MESSAGE = "The e-mail address or password is not right. Check both and try again."
# The one message while a failure delay applies, whichever counter set it.
THROTTLED_LOGIN_MESSAGE = (
    "Too many failed log-in attempts. Wait a moment and try again, or reset your password."
)
# The one message while registrations from the client's address are throttled.
THROTTLED_REGISTRATION_MESSAGE = (
    "Too many sign-up attempts from your network. Wait a while and try again."
)
# The one message while reset requests are throttled, whichever limit tripped: it never
# says whether an account uses the address.
# A message, not a password (bandit's S105 reads the name).
THROTTLED_PASSWORD_RESET_MESSAGE = (
    "Too many password-reset requests. Wait a while and try again, and check your inbox "  # noqa: S105
    "and spam folder for a link already sent."
)


class LoginForm(AuthenticationForm):
    """Log-in by e-mail address and password, with the generic failure message."""

    username = forms.EmailField(
        label="E-mail address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error_messages = {
            **self.error_messages,
            "invalid_login": INVALID_LOGIN_MESSAGE,
            "inactive": INVALID_LOGIN_MESSAGE,
        }

    def clean(self) -> dict[str, Any]:
        """Turns a malformed e-mail address into the generic failure, like a wrong password."""
        if "username" in self.errors:
            self.errors.pop("username")
            raise self.get_invalid_login_error()
        return super().clean()


class RegistrationForm(BaseUserCreationForm[User]):
    """A new account: name, e-mail address and a password typed twice."""

    class Meta:
        model = User
        fields = ("name", "email")
        widgets: ClassVar = {
            "name": forms.TextInput(attrs={"autocomplete": "name", "autofocus": True}),
            "email": forms.EmailInput(attrs={"autocomplete": "email"}),
        }
        labels: ClassVar = {"name": "Your name", "email": "E-mail address"}

    def clean_email(self) -> str:
        """Returns the normalised address; refuses one that already has an account."""
        email = normalize_email_address(self.cleaned_data["email"])
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError(
                "An account with this e-mail address already exists. "
                "Log in, or reset your password if you have forgotten it.",
                code="duplicate_email",
            )
        return email


class ProfileForm(forms.ModelForm[User]):
    """What a user may change about themselves here: name and e-mail of results."""

    class Meta:
        model = User
        fields = ("name", "email_results")
        widgets: ClassVar = {"name": forms.TextInput(attrs={"autocomplete": "name"})}
        labels: ClassVar = {"name": "Your name"}
