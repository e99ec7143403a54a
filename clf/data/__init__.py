"""The arXiv data pipeline: collect, preprocess, validate, and batch for Lightning."""
