"""The fault suite: real processes killed, stopped and soaked, each scenario bounded in time."""
