"""The LMM side of the agent: the chat-model factory, retrying calls, the final-answer schema, the
photo as a content block."""
