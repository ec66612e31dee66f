"""The cluster front door: kopf handlers (thin) and the operator's ports.

Each ``*_handlers`` module (and ``rigloop_daemon``, the kopf daemon that runs the engine's rig
loop per Rig) registers its handlers with kopf's default registry when imported; ``run`` imports
them all, ``startup`` holds the start-up and clean-up handlers.
"""
