from tests.fixtures_stack import redis_client, stack  # noqa: F401
