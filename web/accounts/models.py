"""The user (e-mail log-in and a name) and the counters that throttle log-ins, sign-ups, resets."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


def normalize_email_address(email: str) -> str:
    """Returns the address as stored and looked up: trimmed and lower-cased."""
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    """Creates users and finds them by e-mail address, case-insensitively."""

    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        """Returns the user whose e-mail address matches, whatever its case."""
        return self.get(email=normalize_email_address(username or ""))

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        """Creates an ordinary user; without a password the account cannot log in."""
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        """Creates a user who may use the admin site and do everything."""
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        if fields["is_staff"] is not True or fields["is_superuser"] is not True:
            raise ValueError("a superuser must have is_staff and is_superuser set")
        return self._create(email, password, **fields)

    def _create(self, email: str, password: str | None, **fields: Any) -> User:
        if not email:
            raise ValueError("an e-mail address is required")
        user = self.model(email=normalize_email_address(email), **fields)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in with an e-mail address; results can be e-mailed to them."""

    email = models.EmailField("e-mail address", max_length=254, unique=True)
    name = models.CharField(max_length=150)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log in to the admin site.")
    date_joined = models.DateTimeField(default=timezone.now)
    email_results = models.BooleanField(
        "e-mail me my results",
        default=False,
        help_text="Send each finished diagnosis to this e-mail address.",
    )

    objects: ClassVar[UserManager] = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = ["name"]

    class Meta:
        verbose_name = "user"
        verbose_name_plural = "users"
        constraints: ClassVar = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        """Returns the e-mail address, which identifies the user."""
        return self.email

    def clean(self) -> None:
        """Normalises the e-mail address before validation and saving."""
        super().clean()
        self.email = normalize_email_address(self.email)

    def get_full_name(self) -> str:
        """Returns the name the user gave."""
        return self.name

    def get_short_name(self) -> str:
        """Returns the name the user gave."""
        return self.name


class LoginFailureCounter(models.Model):
    """What one key did within the current window of its scope (web/accounts/throttle.py).

    Log-in attempts per account, per client address and per (account, address) pair,
    and, under their own scopes, registration attempts per client address, password-reset
    requests per client address and per e-mail address, and API requests (web/api/throttles.py);
    `failures` counts whichever the scope counts. Keys
    are HMACs of the e-mail address or client address, so the table holds no personal
    data; a row exists whether or not the account does.
    """

    class Scope(models.TextChoices):
        ACCOUNT = "account", "failed log-ins per e-mail"
        ADDRESS = "address", "failed log-ins per address"
        REGISTER = "register", "registrations per address"
        RESET = "reset", "password resets per address"
        RESET_EMAIL = "reset-to", "password resets per e-mail"
        PAIR = "pair", "log-in attempts per e-mail from one address"
        KNOWN = "known", "successful log-ins per e-mail from one address"
        NOTIFY = "notify", "failure notices e-mailed per account"
        API_USER = "api-user", "API requests per user"
        API_ANON = "api-anon", "anonymous API requests per address"
        API_UPLOAD = "api-up", "API uploads per user"
        API_TOKEN = "api-tok", "API token requests per address"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    key = models.CharField(max_length=64)
    failures = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField()
    # Log-in scopes only: no attempt is checked before this time (the progressive delay).
    blocked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["scope", "key"], name="accounts_login_counter_unique"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["window_start"], name="accounts_login_window_idx")
        ]

    def __str__(self) -> str:
        """Returns the scope and the failure count, never the key."""
        return f"{self.scope}: {self.failures} failures since {self.window_start:%Y-%m-%d %H:%M}"
