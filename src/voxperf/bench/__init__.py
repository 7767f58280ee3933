"""voxperf.bench."""
