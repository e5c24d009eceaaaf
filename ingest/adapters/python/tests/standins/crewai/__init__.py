"""Stand-in for crewai (see ../README.md)."""
