"""The run as a graph of units: plan, units, executor, run directory, results, comparisons."""
