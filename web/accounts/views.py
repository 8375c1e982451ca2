"""Pages of the accounts app: register, log in, password reset (all throttled), profile."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from web.accounts import services
from web.accounts.forms import (
    THROTTLED_LOGIN_MESSAGE,
    THROTTLED_PASSWORD_RESET_MESSAGE,
    THROTTLED_REGISTRATION_MESSAGE,
    LoginForm,
    ProfileForm,
    RegistrationForm,
)
from web.accounts.models import User
from web.accounts.throttle import client_address

logger = logging.getLogger(__name__)

TOO_MANY_REQUESTS = 429


@login_not_required
@sensitive_post_parameters("password1", "password2")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    """Creates an account and logs its owner in; refused with 429 past the address's limit.

    Every attempt counts, valid or not: the form's "already exists" answer would
    otherwise let one address test e-mail addresses at will.
    """
    if request.user.is_authenticated:
        return redirect("core:home")
    if request.method == "POST":
        wait = services.registration_attempt_count(address=client_address(request))
        if wait is not None:
            return _registration_throttled(request, wait)
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.user_create(
            email=form.cleaned_data["email"],
            name=form.cleaned_data["name"],
            password=form.cleaned_data["password1"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.name}. Your account is ready.")
        return redirect("core:home")
    return render(request, "accounts/register.html", {"form": form})


def _registration_throttled(request: HttpRequest, wait: int) -> HttpResponse:
    """The registration page again, with the name and address typed but no passwords: 429."""
    logger.warning("registration refused: too many attempts", extra={"retry_after_s": wait})
    typed = {field: str(request.POST.get(field, ""))[:254] for field in ("name", "email")}
    context = {
        "form": RegistrationForm(initial=typed),
        "throttle_message": THROTTLED_REGISTRATION_MESSAGE,
    }
    response = render(request, "accounts/register.html", context, status=TOO_MANY_REQUESTS)
    return _retry_after(response, wait)


class ThrottledLoginView(auth_views.LoginView):
    """Django's log-in, slowed down: 429 with Retry-After while a failure delay applies.

    A delayed attempt is not checked at all, so it tells nothing about the password;
    the same message answers whichever counter set the delay and whether the account
    exists. Delays are per account and address, so an attacker slows only themself
    (web/README.md, "Log-in, registration and password-reset throttling").
    """

    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    _attempt: services.LoginAttempt

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Counts the attempt (or answers 429 while a delay applies), then checks it."""
        self._attempt = services.login_attempt_begin(
            email=self._email(), address=client_address(request)
        )
        if self._attempt.wait is not None:
            # No address, e-mail or key in the log: the request id ties it to the request.
            wait = self._attempt.wait
            logger.warning("log-in delayed: earlier failures", extra={"retry_after_s": wait})
            return self._throttled(wait)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        """Logs the user in and forgets the account's failures."""
        services.login_success_record(attempt=self._attempt)
        return super().form_valid(form)

    def form_invalid(self, form: Any) -> HttpResponse:
        """Shows the generic message; the owner hears of repeated failures."""
        services.login_failure_record(attempt=self._attempt)
        return super().form_invalid(form)

    def _email(self) -> str:
        return str(self.request.POST.get("username", ""))[:254]

    def _throttled(self, wait: int) -> HttpResponse:
        form = self.get_form_class()(self.request, initial={"username": self._email()})
        context = self.get_context_data(form=form, throttle_message=THROTTLED_LOGIN_MESSAGE)
        return _retry_after(self.render_to_response(context, status=TOO_MANY_REQUESTS), wait)


class ThrottledPasswordResetView(auth_views.PasswordResetView):
    """Django's password reset, refused with 429 past the limit per client address or e-mail.

    Requests are counted whether or not an account uses the e-mail address, and a
    refused one sends nothing and shows one message, so the limit reveals no account.
    Under the limits an unknown address gets the same "check your e-mail" page as ever.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Counts the request, then sends the link (when an account uses the address)."""
        email = str(request.POST.get("email", ""))[:254]
        wait = services.password_reset_request_count(address=client_address(request), email=email)
        if wait is not None:
            logger.warning(
                "password reset refused: too many requests", extra={"retry_after_s": wait}
            )
            form = self.get_form_class()(initial={"email": email})
            context = self.get_context_data(
                form=form, throttle_message=THROTTLED_PASSWORD_RESET_MESSAGE
            )
            return _retry_after(self.render_to_response(context, status=TOO_MANY_REQUESTS), wait)
        return super().post(request, *args, **kwargs)


def _retry_after(response: HttpResponse, wait: int) -> HttpResponse:
    """Adds Retry-After (seconds) to a 429 response."""
    response["Retry-After"] = str(wait)
    return response


class LogoutView(auth_views.LogoutView):
    """Logs out on POST; a GET shows a page with the button, so a link also works."""

    http_method_names = ["get", "post", "options"]  # noqa: RUF012  (Django's own attribute)
    template_name = "accounts/logged_out.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Asks for confirmation, or says the user is already logged out."""
        return render(request, "accounts/logout_confirm.html")


@never_cache
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """Shows and changes the user's name and whether results are e-mailed."""
    user = request.user
    if not isinstance(user, User):  # LoginRequiredMiddleware lets only users get here
        raise PermissionDenied
    form = ProfileForm(request.POST or None, instance=user)
    if request.method == "POST" and form.is_valid():
        services.user_update_profile(
            user=user,
            name=form.cleaned_data["name"],
            email_results=form.cleaned_data["email_results"],
        )
        messages.success(request, "Your changes are saved.")
        return HttpResponseRedirect(reverse_lazy("accounts:profile"))
    return render(request, "accounts/profile.html", {"form": form})


password_change = auth_views.PasswordChangeView.as_view(
    template_name="accounts/password_change_form.html",
    success_url=reverse_lazy("accounts:password_change_done"),
)
password_change_done = auth_views.PasswordChangeDoneView.as_view(
    template_name="accounts/password_change_done.html"
)
password_reset = ThrottledPasswordResetView.as_view(
    template_name="accounts/password_reset_form.html",
    email_template_name="accounts/email/password_reset.txt",
    html_email_template_name="accounts/email/password_reset.html",
    subject_template_name="accounts/email/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password_reset_done"),
    extra_email_context={"site_name": settings.WEB_SITE_NAME},
)
password_reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="accounts/password_reset_done.html"
)
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html",
    success_url=reverse_lazy("accounts:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)


@login_not_required
@require_http_methods(["GET", "POST"])
def admin_login(request: HttpRequest) -> HttpResponse:
    """Sends the admin site's log-in to the site's own, throttled one."""
    query = urlencode({"next": request.GET.get("next") or "/admin/"})
    return HttpResponseRedirect(f"{reverse_lazy('accounts:login')}?{query}")


login_view = method_decorator(login_not_required, name="dispatch")(ThrottledLoginView).as_view()
