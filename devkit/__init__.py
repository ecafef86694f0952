"""What a developer runs the bridge with, without the real outside world: the fakes of 轻简, 天网, 图绘
and WeCom (real servers on loopback speaking CONTRACTS.md), and the harness that starts the system's
processes and its stores. `manage.py up`, the tests and the benchmarks all use it; `app/` never does."""
