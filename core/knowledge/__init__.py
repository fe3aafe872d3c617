"""Marketing knowledge: products, prices, places, promotions and personas, embedded into
pgvector and searched by meaning and by words (hybrid), with filters on type, validity,
stock and region. Agents ground their replies in it."""
