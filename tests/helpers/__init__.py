"""Test helpers shared across the test tree (a loopback arXiv API server)."""
