"""voxperf.audio."""
