"""voxperf.service: the reference voice service (FastAPI)."""
