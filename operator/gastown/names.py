"""Names shared across gastown: who signs the ledger, what marks gastown's objects.

Each value has one spelling, here; modules import it rather than typing it out again.
"""

from __future__ import annotations

# -- gastown's API group: its custom resources' (api/common.py), and its labels' keys ---------------
GROUP = "gastown.dev"
# -- what a runtime may be called: a preset, or one in the runtimes config file --------------------
RUNTIME_NAME = r"^[a-z][a-z0-9-]{0,39}$"

# -- a polecat's branch for a bead: where its sessions push their work --------------------------
def branch_for(polecat: str, bead_id: str) -> str:
    return f"polecat/{polecat}/{bead_id}"


# -- actors: who a ledger record says did it ---------------------------------------------------
OPERATOR_ACTOR = "gastown operator"  # the Kubernetes operator
DAEMON_ACTOR = "gastown daemon"  # the local town daemon

# -- the well-known Kubernetes labels -------------------------------------------------------------
APP_NAME = "app.kubernetes.io/name"
APP_COMPONENT = "app.kubernetes.io/component"
APP_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "gastown-operator"  # the value of APP_MANAGED_BY, and the operator's Event component

# -- gastown's own labels and annotations --------------------------------------------------------
RIG_LABEL = f"{GROUP}/rig"
POLECAT_LABEL = f"{GROUP}/polecat"
BEAD_LABEL = f"{GROUP}/bead"  # a label on session Jobs, an annotation too
SESSION_LABEL = f"{GROUP}/session"
CONVOY_LABEL = f"{GROUP}/convoy"
BATCH_LABEL = f"{GROUP}/batch"
VERIFICATION_LABEL = f"{GROUP}/verification"
DOG_LABEL = f"{GROUP}/dog"
RUNTIME_ANNOTATION = f"{GROUP}/runtime"
SESSION_COUNT_ANNOTATION = f"{GROUP}/session-count"
RUN_ANNOTATION = f"{GROUP}/run"
