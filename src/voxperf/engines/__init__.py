"""voxperf.engines."""
