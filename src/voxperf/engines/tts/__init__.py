"""voxperf.engines.tts."""
