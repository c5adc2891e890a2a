"""Test infrastructure: TLS material, real brokers, signing servers."""
