"""Reports over run directories: report.md/csv/json, statistics, plots and the offline HTML viewer."""
