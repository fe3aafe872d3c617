"""c360's record matching engine: the probabilistic half of identity resolution.

Records (a CRM bulk load, or profiles' traits) are standardised (`standardise`), paired by
blocking rules (`blocking`), compared field by field into agreement levels (`compare`), scored
by a Fellegi-Sunter model whose m and u probabilities are estimated without labels (`model`),
and grouped into clusters under guards (`cluster`). `batch` runs the whole chain over a table;
`incremental` matches one record against an index of existing profiles in PostgreSQL.

Nothing here writes profiles: F3 and `c360.merges` act on what the engine decides.
"""
