"""Framework adapters: LangChain (TroyHandler), OpenAI Agents (TroyHooks), CrewAI
(enable_troy). Each takes the guard's options: policy, mode, agent_name, on_violation,
agent_metadata, metadata_fn, and the server's url and token."""
