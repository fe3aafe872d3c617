"""Connectors: sources c360 reads from (files, CRMs, ERPs) and channels it writes to."""
