"""What a function can do to the world, read from its code: the capability tags of a record.

Static analysis of the function's source and of the imports it carries (the librarian adds the
tags of the library functions it calls). It is a screen, not a proof: Python can reach anything
through enough indirection, which is why ``dynamic-code`` (eval, exec, importlib, pickle loads)
is itself a capability, denied by default. The tags are shown to the coder and to people, and
``librarian.deny_capabilities`` sends functions carrying a denied one to quarantine.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from dynagraph.tools.codeparse import parse_python

CAPABILITIES: tuple[str, ...] = (
    "network",
    "subprocess",
    "filesystem-write",
    "environment",
    "dynamic-code",
    "native",
)

#: Modules whose mere use grants a capability.
_MODULES: dict[str, str] = {
    **dict.fromkeys(
        (
            "socket",
            "ssl",
            "urllib",
            "urllib3",
            "http",
            "httpx",
            "requests",
            "aiohttp",
            "ftplib",
            "smtplib",
            "poplib",
            "imaplib",
            "telnetlib",
            "websocket",
            "websockets",
            "paramiko",
            "xmlrpc",
            "asyncssh",
            "grpc",
        ),
        "network",
    ),
    **dict.fromkeys(
        ("subprocess", "pty", "multiprocessing", "pexpect", "sh", "plumbum"), "subprocess"
    ),
    **dict.fromkeys(("shutil", "tempfile"), "filesystem-write"),
    **dict.fromkeys(
        (
            "importlib",
            "pickle",
            "cPickle",
            "dill",
            "marshal",
            "shelve",
            "cloudpickle",
            "runpy",
            "code",
            "codeop",
            "joblib",
        ),
        "dynamic-code",
    ),
    **dict.fromkeys(("ctypes", "cffi", "_ctypes"), "native"),
}

#: Calls of builtins and of ``os`` members, by name.
_BUILTIN_CALLS = {
    "eval": "dynamic-code",
    "exec": "dynamic-code",
    "compile": "dynamic-code",
    "__import__": "dynamic-code",
    "breakpoint": "dynamic-code",
}
_OS_MEMBERS = {
    **dict.fromkeys(
        ("environ", "environb", "getenv", "putenv", "unsetenv", "getenvb"), "environment"
    ),
    **dict.fromkeys(
        ("system", "popen", "fork", "forkpty", "kill", "killpg", "posix_spawn", "posix_spawnp"),
        "subprocess",
    ),
    **dict.fromkeys(
        (
            "remove",
            "unlink",
            "rename",
            "renames",
            "replace",
            "rmdir",
            "removedirs",
            "mkdir",
            "makedirs",
            "chmod",
            "chown",
            "symlink",
            "link",
            "truncate",
            "write",
            "mkfifo",
            "utime",
        ),
        "filesystem-write",
    ),
}
#: Methods that write files whatever object they are called on (pathlib, pandas, matplotlib).
_WRITE_METHODS = frozenset(
    {
        "write_text",
        "write_bytes",
        "touch",
        "unlink",
        "rmdir",
        "mkdir",
        "rename",
        "replace",
        "symlink_to",
        "hardlink_to",
        "chmod",
        "to_csv",
        "to_excel",
        "to_parquet",
        "to_pickle",
        "to_feather",
        "to_hdf",
        "to_sql",
        "savefig",
        "tofile",
    }
)
#: Initial actions (tools/actions) that reach the network from the kernel.
_NETWORK_ACTIONS = frozenset(
    {"fetch_url", "download", "web_search", "find_archived_url", "ask_image"}
)


def capabilities_of(code: str, imports: Iterable[str] = ()) -> list[str]:
    """The capability tags of a function (its source and the import lines it carries), in the
    order of :data:`CAPABILITIES`. Code that does not parse gets every tag: it cannot be read."""
    try:
        tree = parse_python("\n".join([*imports, code]))
    except SyntaxError:
        return list(CAPABILITIES)
    found: set[str] = set()
    os_aliases = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _add_module(found, alias.name)
                if alias.name == "os":
                    os_aliases.add(alias.asname or "os")
        elif isinstance(node, ast.ImportFrom) and node.module:
            _add_module(found, node.module)
            if node.module.split(".")[0] == "os":
                for alias in node.names:
                    if alias.name in _OS_MEMBERS:
                        found.add(_OS_MEMBERS[alias.name])
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in os_aliases:
                if node.attr in _OS_MEMBERS:
                    found.add(_OS_MEMBERS[node.attr])
                elif node.attr.startswith(("exec", "spawn")):
                    found.add("subprocess")
            if node.attr in _WRITE_METHODS:
                found.add("filesystem-write")
        elif isinstance(node, ast.Call):
            _add_call(found, node)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("/proc")
        ):
            found.add("environment")  # another process's environ, cmdline, memory
    return [c for c in CAPABILITIES if c in found]


def _add_module(found: set[str], module: str) -> None:
    root = module.split(".")[0]
    if root in _MODULES:
        found.add(_MODULES[root])


def _add_call(found: set[str], call: ast.Call) -> None:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else None
    if name in _BUILTIN_CALLS:
        found.add(_BUILTIN_CALLS[name])
    elif name in _NETWORK_ACTIONS:
        found.add("network")
    elif name == "open" and _opens_for_writing(call):
        found.add("filesystem-write")
    elif isinstance(func, ast.Attribute) and func.attr == "open" and _opens_for_writing(call, 0):
        found.add("filesystem-write")  # Path(...).open("w")
    elif name in {"getattr", "setattr", "globals", "vars"} and any(
        isinstance(a, ast.Constant) and a.value in {"__builtins__", "__import__", "system"}
        for a in call.args
    ):
        found.add("dynamic-code")


def _opens_for_writing(call: ast.Call, mode_position: int = 1) -> bool:
    """``open(path, mode)`` with a mode that writes; a mode we cannot read counts as writing."""
    mode: ast.expr | None = None
    if len(call.args) > mode_position:
        mode = call.args[mode_position]
    for keyword in call.keywords:
        if keyword.arg == "mode":
            mode = keyword.value
    if mode is None:
        return False
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return any(flag in mode.value for flag in "wax+")
    return True
