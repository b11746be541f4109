"""Answer quality against the baselines: the evaluation sets, the paired gain and the summary table."""
