"""The event model (Segment's wire format) and F1: validation and enrichment."""
