"""voxperf.engines.stt."""
