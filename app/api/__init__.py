"""The REST API of CONTRACTS.md §1, one blueprint per resource."""
