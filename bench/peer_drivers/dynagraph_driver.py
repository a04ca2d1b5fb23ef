"""dynagraph against the loopback model (run with the project's venv by bench/peers.py).

Public API only (``from dynagraph import ...``), so refactors inside the package do not break
it: ``load_settings(--config)``, one ``Services`` for the process (as a long-lived caller
would keep), and ``run_task(task, settings, context=Context(use_library=...), services=...)``
per task. Each task starts its own Jupyter kernel, as ``run_task`` does.
"""

from __future__ import annotations

import time

STARTED = time.time()

import uuid  # noqa: E402
from importlib.metadata import version  # noqa: E402

import common  # noqa: E402

from dynagraph import Context, Services, load_settings, run_task  # noqa: E402


def main() -> None:
    def extra(parser):
        parser.add_argument("--config", required=True)
        parser.add_argument("--no-library", action="store_true")

    args = common.parse_args(extra)
    settings = load_settings(args.config)
    services = Services(settings)
    context = Context(use_library=not args.no_library)
    statuses: list[str] = []

    def run_one(text: str, n: int, index: int):
        result = run_task(
            text,
            settings,
            thread_id=f"peers-{index}-{uuid.uuid4().hex[:8]}",
            context=context,
            services=services,
        )
        statuses.append(
            result.status if result.error is None else f"{result.status}: {result.error}"
        )
        executed = sum(1 for s in result.steps if s.get("status") == "ok")
        return result.answer, executed

    try:
        common.run_all(
            args, "dynagraph", version("dynagraph"), run_one, STARTED, {"statuses": statuses}
        )
    finally:
        services.close()


if __name__ == "__main__":
    main()
