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
    # the second factor (accounts/second_factor_pages.py)
    "code_title": "Enter your code",
    "code_intro": "Open your authenticator app and enter the 6-digit code it shows for {brand}. "
    "Lost your phone? Enter one of your recovery codes instead.",
    "code": "Code",
    "code_wrong": "That code is not right, or it was used already. Wait for the next one.",
    "code_throttled": "Too many wrong codes. Try again in {minutes} minutes.",
    "code_expired": "This sign-in took too long. Please sign in again.",
    "verify_code": "Continue",
    "factor_heading": "Two-step sign-in",
    "factor_off": "Two-step sign-in is off: your password alone signs you in.",
    "factor_on": "Two-step sign-in is on: signing in asks for a code from your app. "
    "Recovery codes left: {left}.",
    "factor_start": "Set up two-step sign-in",
    "factor_setup_title": "Set up two-step sign-in",
    "factor_setup_intro": "Add this key to an authenticator app (open the link on your phone, or "
    "type the key), then enter the code the app shows.",
    "factor_key": "Key",
    "factor_qr": "QR code: scan it with your authenticator app",
    "factor_link": "Add to your authenticator app",
    "factor_confirm": "Switch it on",
    "factor_enabled_title": "Two-step sign-in is on",
    "factor_recovery_intro": "Keep these recovery codes somewhere safe: each signs you in once "
    "without your phone. They are shown only now.",
    "factor_disable": "Switch two-step sign-in off",
    "factor_disable_intro": "Enter a current code from your app (or a recovery code) to switch it off.",
    "factor_disabled": "Two-step sign-in is off.",
    # progressive profiling (accounts/profiling.py)
    "more_title": "One more thing",
    "more_skip": "Skip",
    "more_save": "Save",
    "ask_first_name": "What is your first name?",
    "why_first_name": "So that we can greet you by name in our e-mails and on our sites.",
    "ask_last_name": "What is your last name?",
    "why_last_name": "So that parcels and letters reach you.",
    "ask_country": "Which country do you live in?",
    "why_country": "So that we show you prices, delivery times and offers for where you are.",
    "ask_city": "Which city do you live in?",
    "why_city": "So that we can tell you about events and shops near you.",
    "ask_birthday": "When is your birthday?",
    "why_birthday": "So that we can send you something on your birthday.",
    "answer_empty": "Enter an answer, or skip the question.",
    "answer_too_long": "That answer is too long.",
    "answer_date": "Enter a date such as 1990-04-21.",
    "more_note": "You can skip this: we ask only one question at a time, and only once in a while.",
    "preferences_link": "Your preferences, surveys and data",
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
