"""Conversations about a photo, in one package: threads (one photo per thread on the agent's
checkpointer: create, ask, list, history), follow-up questions (checked, turned into the graph's
input, their outcome), answers without an LMM (rules), the chat session and the web chat's shapes."""
