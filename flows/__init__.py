"""Entry points for deployments (``flows/<name>.py:<flow>``); the flows live in the package."""
