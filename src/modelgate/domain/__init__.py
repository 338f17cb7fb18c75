"""Typed domain objects: the control-plane resources and their lifecycles."""
