"""Metrics and alarms with CloudWatch's API and semantics; the entry point is telemetry/system.py.

Modules: recorder (request path), store (1 s / 60 s aggregates), sketch and statistics (percentiles),
persist and schema (SQLite), instances (psutil), metric_math, alarm_records and documents (alarms),
notify (alarm actions), prometheus (/metrics), errors (CloudWatch's error codes).
"""
