"""Analytics over the profile store and the lake: overview, trends, RFM, cohorts, lifetime value (F5)."""
