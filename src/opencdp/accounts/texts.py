"""The words on the hosted pages and in the e-mails, in English; a brand replaces any of them
per locale (`OPENCDP_ACCOUNTS_TEXTS`, a JSON file `{"de": {"sign_in": "Anmelden", …}}`). The
locale is the first of the request's `ui_locales` and `Accept-Language` the brand has texts for."""

from __future__ import annotations

from opencdp.accounts.config import Brand

ENGLISH = {
    "sign_in": "Sign in",
    "sign_in_title": "Sign in to {brand}",
    "register": "Create an account",
    "register_title": "Create your {brand} account",
    "register_link": "No account yet? Create one",
    "sign_in_link": "Have an account? Sign in",
    "continue_with": "Continue with {provider}",
    "or": "or",
    "linked_logins": "Ways to sign in",
    "password_login": "Password",
    "link_with": "Link {provider}",
    "unlink": "Unlink",
    "social_failed": "Signing in with {provider} did not work. Try again, or use another way to sign in.",
    "social_expired": "This sign-in took too long or began in another browser. Try again.",
    "social_sign_in_first": "There is an account with this e-mail address. Sign in to it first, "
    "then link {provider} on your account page.",
    "social_taken": "This {provider} login belongs to another account. Sign in with it to use that account.",
    "email": "E-mail address",
    "password": "Password",
    "new_password": "New password",
    "name": "Name (optional)",
    "password_hint": "At least 10 characters; a phrase of your own is best.",
    "consent_heading": "What may we send you? (each is optional)",
    "forgot_link": "Forgot your password?",
    "forgot_title": "Reset your password",
    "forgot_intro": "Enter your e-mail address and we send you a link to choose a new password.",
    "send_link": "Send the link",
    "reset_title": "Choose a new password",
    "save_password": "Save the password",
    "account_title": "Your account",
    "save": "Save",
    "saved": "Saved.",
    "sign_out": "Sign out",
    "sign_out_title": "Sign out of {brand}?",
    "signed_out": "You are signed out.",
    "wrong_login": "Wrong e-mail address or password.",
    "throttled": "Too many failed sign-ins. Try again in {minutes} minutes.",
    "busy": "Many sign-ins are under way. Try again in a few seconds.",
    "check_mail": "Check your e-mail: we sent a link to {email}. It works for {hours} hours.",
    "link_sent": "If there is an account for {email}, we sent it a link to reset the password.",
    "verify_first": "Please confirm your e-mail address first: we sent you a new link.",
    "verified": "Your e-mail address is confirmed. You can sign in now.",
    "bad_link": "This link has expired or was used already. Ask for a new one.",
    "password_changed": "Your password is changed. Sign in with the new one.",
    "verify_subject": "Confirm your e-mail address for {brand}",
    "verify_body": "Hello,\n\nplease confirm your e-mail address for {brand} by opening this link:"
    "\n\n{link}\n\nIf you did not create an account, ignore this e-mail.\n",
    "exists_subject": "Your {brand} account",
    "exists_body": "Hello,\n\nsomeone tried to create a {brand} account with this address, which has "
    "one already. If it was you, sign in or reset your password here:\n\n{link}\n\n"
    "Otherwise ignore this e-mail.\n",
    "reset_subject": "Reset your {brand} password",
    "reset_body": "Hello,\n\nopen this link to choose a new password for {brand}:\n\n{link}\n\n"
    "If you did not ask for it, ignore this e-mail: your password stays as it is.\n",
    "form_expired": "This form was open too long or came from elsewhere. Reload the page and try again.",
    "error_title": "That did not work",
}


class Texts:
    def __init__(self, brand: Brand, locale: str) -> None:
        self.brand, self.locale = brand, locale
        self._own = brand.texts.get(locale) or brand.texts.get(locale.partition("_")[0]) or {}

    def __call__(self, key: str, **values: object) -> str:
        text = self._own.get(key) or ENGLISH[key]
        return text.format(brand=self.brand.name, **values)


def negotiate(brand: Brand, ui_locales: str | None, accept_language: str | None) -> str:
    """The first wanted locale the brand has texts for, else English."""
    wanted = (ui_locales or "").split()
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip()
        if tag and tag != "*":
            wanted.append(tag)
    for tag in wanted:
        tag = tag.replace("-", "_")
        for candidate in (tag, tag.partition("_")[0]):
            if candidate in brand.texts:
                return candidate
    return "en"
