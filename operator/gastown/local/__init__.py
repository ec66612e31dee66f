"""Local mode: the same engine on one machine, with local processes and local git."""
