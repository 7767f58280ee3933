"""voxperf.store: the append-only result store (local directory or git repository)."""
