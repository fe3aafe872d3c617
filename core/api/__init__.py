"""HTTP: the Segment-compatible gateway (F1 inline) and the F5 profile API, as one Litestar app."""
