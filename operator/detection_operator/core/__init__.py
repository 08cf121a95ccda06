"""Shared vocabulary of every layer, free of I/O: object identity, readings, durations, signatures."""
