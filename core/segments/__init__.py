"""Segments: filters over profiles, their counts, members and exports, kept current as
profiles change."""
