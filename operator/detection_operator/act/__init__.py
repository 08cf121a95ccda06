"""Writers: owned ConfigMaps, Deployment annotations, Events and status (blocking; run off the loop)."""
