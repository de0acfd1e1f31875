"""The optional cloud: a server that relays and stores, and can never open a car (docs/cloud.md)."""
