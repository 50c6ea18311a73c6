"""VQToken for Transformers (placeholder, filled in below)."""
