"""The customer-facing face: what a brand's customers see and use themselves (docs/identity.md).

A face like `ui/`, for customers instead of staff: customer accounts with opencdp as the brand's
OpenID Connect provider, and the preference centre with its surveys. Its own state is credentials,
sessions and links (`accounts`, `account_sessions`, clients, codes, tokens, signing keys,
preference links); everything a customer tells the brand — sign-up, sign-in, consent, the verified
e-mail, a name, preferences, answers — becomes an event in the log, so identity resolution,
segments and `rebuild` treat it like any other source.
"""
