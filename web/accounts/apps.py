"""The accounts app's configuration."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """People who use the site: e-mail log-in, a name, their preferences."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "web.accounts"
    label = "accounts"
    verbose_name = "Accounts"
