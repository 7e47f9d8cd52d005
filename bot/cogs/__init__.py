"""One cog per user-facing area; each translates interactions into `core.service` calls and back."""
