"""Gas Town: a Kubernetes operator that runs a town of AI coding agents.

Git is the database (see ``gastown.ledger``); custom resources are the API
(``gastown.api``); pods and processes are disposable.
"""

__version__ = "0.1.0"
