"""Guarded deployments as pure policies.

- ``config``: the typed DeploymentConfig, SageMaker's limits, ``validate_deployment``;
- ``wire``: ``parse_deployment_config`` and ``to_wire`` (the AWS JSON, LastDeploymentConfig);
- ``plan``: the steps of blue/green and the batches of rolling updates and their rollbacks;
- ``contract``: what the rollout controller observes (``Observation``) and does (the ``Action`` types);
- ``machine``: the durable state machine (``start``, ``advance``, ``recover``, ``RolloutState``);
- ``view``: what DescribeEndpoint shows in each phase (``endpoint_view``);
- ``compare``: the sequential green-vs-blue test (beyond SageMaker; docs/rollout-comparison.md).

Nothing here reads a clock, draws a random number or performs I/O: the controller passes the time and
the observations in and carries out the returned actions.
"""
