"""Analytics over the profile store and the lake (F5): overview, trends, RFM, cohorts and
customer lifetime value."""
