"""What the tests and the bench share, one module per kind of thing:

- `constants`: the bucket, region, appid and credentials every local run uses; `free_port()`.
- `images`: small real images whose bytes (and so their deterministic labels) depend on a seed.
- `scf`: the SCF context (the tooling's one builder, with these constants) and the fixture events.
- `sdk`: an unmodified SDK client pointed at a started emulator.
- `function_stack`: the emulator with a label engine and the real `App` wired to it.
- `redis_server`: a real `redis-server` on a free port (its fixtures: tests/integration/conftest_redis.py).
- `browser`: a real headless Chromium through Selenium.

Fixtures stay in the conftest.py files; they build on these.
"""
