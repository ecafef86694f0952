"""One client module per outside party; the only places that know those wire formats."""
