"""voxperf.trace."""
