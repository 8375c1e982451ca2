"""The admin pages of accounts: users by e-mail address, log-in counters read-only."""

from __future__ import annotations

from typing import ClassVar

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from web.accounts.models import LoginFailureCounter, User


class UserCreationAdminForm(AdminUserCreationForm[User]):
    """The admin's form for a new user: e-mail address, name, password."""

    class Meta:
        model = User
        fields = ("email", "name")


class UserChangeAdminForm(UserChangeForm[User]):
    """The admin's form for an existing user."""

    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin[User]):
    """Users listed and found by e-mail address and name."""

    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    ordering = ("email",)
    list_display = ("email", "name", "is_active", "is_staff", "date_joined")
    search_fields = ("email", "name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal", {"fields": ("name", "email_results")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "name", "usable_password", "password1", "password2"),
            },
        ),
    )


@admin.register(LoginFailureCounter)
class LoginFailureCounterAdmin(admin.ModelAdmin[LoginFailureCounter]):
    """Failed log-in counters, to see and clear a lock-out; keys are HMACs."""

    list_display = ("scope", "failures", "window_start")
    list_filter = ("scope",)
    readonly_fields: ClassVar = ("scope", "key", "failures", "window_start")

    def has_add_permission(self, request: object) -> bool:
        """Counters are only made by failed log-ins."""
        return False
