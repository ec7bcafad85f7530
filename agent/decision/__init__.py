"""How a run commits to an answer without an LMM (the policy's rules) and explains it."""
