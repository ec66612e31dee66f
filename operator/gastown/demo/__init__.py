"""`make demo`: a whole town on one machine, no cluster and no API keys (scripted agents)."""
