"""The protocols: each turns a config into jobs, runs them through the store, and reports."""
