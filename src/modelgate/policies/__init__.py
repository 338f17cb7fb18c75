"""Pure policies: state and draws in, decision out; no clock, no randomness, no I/O."""
