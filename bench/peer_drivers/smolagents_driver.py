"""smolagents CodeAgent against the loopback model (run in the smolagents venv by bench/peers.py).

Defaults of the library except: no base tools, logging off (no rich console output to pay for),
``max_steps`` N + 2. The code runs in smolagents' own interpreter (``LocalPythonExecutor``, the
default executor), in this process.
"""

from __future__ import annotations

import time

STARTED = time.time()

import common  # noqa: E402
import smolagents  # noqa: E402
from smolagents import CodeAgent, OpenAIServerModel  # noqa: E402
from smolagents.agents import LogLevel  # noqa: E402
from smolagents.memory import ActionStep  # noqa: E402


def main() -> None:
    args = common.parse_args()
    model = OpenAIServerModel(
        model_id="stub-model",
        api_base=args.base_url,
        api_key="sk-stub",
        client_kwargs={"max_retries": 0},
    )

    def run_one(text: str, n: int, index: int):
        agent = CodeAgent(
            tools=[],
            model=model,
            add_base_tools=False,
            verbosity_level=LogLevel.OFF,
            max_steps=n + 2,
        )
        answer = agent.run(text)
        steps = [s for s in agent.memory.steps if isinstance(s, ActionStep)]
        executed = sum(1 for s in steps if not s.is_final_answer and s.error is None)
        return answer, executed

    common.run_all(args, "smolagents", smolagents.__version__, run_one, STARTED)


if __name__ == "__main__":
    main()
