"""The faces that serve the pipeline: the service, JSON API, UI, OpenAI API, MCP, the web app."""
