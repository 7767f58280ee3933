"""voxperf.engines.rewrite."""
