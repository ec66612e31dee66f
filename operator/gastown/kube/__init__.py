"""The cluster front door: kopf handlers (thin) and the operator's settings.

Importing ``gastown.kube.handlers`` registers the handlers with kopf's default registry.
"""
