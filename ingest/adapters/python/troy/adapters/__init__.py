"""Framework adapters: LangChain (TroyHandler), OpenAI Agents (TroyHooks), CrewAI
(enable_troy). Each takes the guard's options (policy, mode, agent_name, on_violation,
agent_metadata) and metadata_fn, which maps each action to the step metadata policies
read; other keyword arguments (url, token, session, fail_open, data_dir...) go to the
TroyGuard, or guard= gives one to share."""
