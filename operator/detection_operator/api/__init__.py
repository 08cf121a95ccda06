"""pydantic models of both CRDs' spec and status: the one source the CRD schemas are generated from."""
