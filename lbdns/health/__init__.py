"""Health: immutable health views, the consecutive up/down tracker and pool health."""
