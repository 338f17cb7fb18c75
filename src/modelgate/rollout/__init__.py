"""Guarded deployments as pure policies: the typed DeploymentConfig and its validation (``config``),
the step plan (``plan``), the durable rollout state machine (``machine``) and the sequential green-vs-blue
comparison (``compare``). Nothing here reads a clock, draws a random number or performs I/O; the rollout
controller passes the time and the observations in and carries out the returned actions.
"""
