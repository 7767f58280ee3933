"""voxperf.report: compare results, detect regressions, render reports."""
