"""Generated from proto/hoplab/v1/*.proto by `make proto`; do not edit."""
