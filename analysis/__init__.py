"""Run folders into pandas, plots, comparison tables and reports (imports neither torch nor loops)."""
