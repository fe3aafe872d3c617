"""Admin and dashboard templates and static assets (HTMX); pages arrive with issue 6."""
