"""What a status holds: conditions and the typed status each evaluation writes."""
