"""Use cases on typed domain objects; they raise domain errors only."""
