"""voxperf.engines.vad."""
