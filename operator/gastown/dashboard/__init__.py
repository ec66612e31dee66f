"""The web dashboard: the town, its rigs, convoys, beads and the feed, live, read from the ledgers.

``views`` renders pages from beads (pure, every untrusted string escaped), ``server`` serves them
with server-sent events for live updates and token-guarded actions, ``sources`` says which rigs
there are (a local town's town.json; a cluster's Rig objects in ``cluster``).
"""
