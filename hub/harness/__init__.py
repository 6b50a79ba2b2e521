"""Proof under stress: SIGKILL the hub anywhere, or fault its plant systems, then check that
nothing was lost, nothing was posted twice and no unsafe permit was left unblocked."""
