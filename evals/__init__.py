"""Evaluation harness: benchmark readers, metrics, the resumable runner, reports and comparisons (`geoagent eval`)."""
