"""The Data box: snapshot manifests, the verify gate, the demo dataset."""
