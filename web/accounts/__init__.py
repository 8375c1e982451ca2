"""Accounts: a user with e-mail log-in and a name; registration, log-in throttling, resets."""
