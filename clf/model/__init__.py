"""The classifier: LightningModule, training callbacks and recovery from out-of-memory errors."""
