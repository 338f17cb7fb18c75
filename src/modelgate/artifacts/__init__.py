"""Fetching and unpacking model data."""
