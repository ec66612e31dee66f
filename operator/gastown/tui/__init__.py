"""`gt tui`: the town in a terminal (textual). ``model`` reads a local town into a snapshot (no
textual there); ``app`` shows it. A cluster mode (the Rig objects and pod logs through the API,
as the dashboard's ``cluster`` and `gt peek -n` read them) is not written yet."""
