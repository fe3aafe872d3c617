"""Governance: sources and tracking plans, attribute definitions, access policies, lineage,
consent, deletion requests, the compliance report and F0 metadata sync."""
