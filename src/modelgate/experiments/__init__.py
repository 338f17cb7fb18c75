"""A/B experiments: per-user variant choice by bandit strategies, conversions, and an honest answer.

Modules, from the pure core outwards:

- ``entities``: the nouns (strategy names, counts, parameters, experiments) and the reward rule.
- ``strategies``: WeightedSampling, EpsilonGreedy, UCB1, ThompsonSampling and warm-up, pure.
- ``sequential``: the group-sequential test of each challenger against the control, pure.
- ``analysis``: credible intervals, probability of being best, expected loss, and the verdict, pure.
- ``assignments``: sticky (user, endpoint) assignment policy and its store interface.
- ``backlog`` / ``assignment_cache``: assignments and served records in memory, written behind in
  batches from a worker thread, so that the service does no store I/O on the event loop.
- ``store`` / ``sqlstore``: experiments, folded counts and looks; the SQLAlchemy implementations.
- ``events`` / ``journal`` / ``sinks``: the JSON-lines events and their filter; the journal that makes
  each durable before its answer and delivers it; directory and S3 sinks.
- ``recovery``: after a kill, what the write-behind lost, restored from the journal's events.
- ``aggregator``: folds event files into counts exactly once and takes the sequential looks.
- ``pipeline``: the background task that delivers the journal and runs the aggregator.
- ``ports``: the Protocols the gateway implements (Invoker, EndpointCatalog, MetricsPublisher).
- ``service``: invoke, convert, stats, register, promote (the anchor's API semantics).
- ``http``: the REST routes over the service (plain ASGI); ``guard``: which requests they accept.
"""
