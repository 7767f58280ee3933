"""voxperf.pipeline."""
