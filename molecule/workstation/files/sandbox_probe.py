"""Tries what open-webui.service forbids, from inside a unit with the same sandbox (verify.yml).

Prints NAME=ok or NAME=<errno name> per attempt, and what the sandbox lets it see.
"""

import ctypes
import errno
import os
import socket
from collections.abc import Callable

libc = ctypes.CDLL(None, use_errno=True)


def attempt(name: str, action: Callable[[], object]) -> None:
    try:
        action()
        print(f"{name}=ok")
    except OSError as error:
        print(f"{name}={errno.errorcode.get(error.errno or 0, error.errno)}")


def write(path: str) -> Callable[[], None]:
    def run() -> None:
        with open(path, "w", encoding="utf-8"):
            pass
        os.remove(path)
    return run


def syscall(result: int) -> None:
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


attempt("write_usr", write("/usr/.llmfleet-probe"))
attempt("write_data", write("/var/lib/open-webui/.llmfleet-probe"))
attempt("inet_socket", lambda: socket.socket(socket.AF_INET).close())
attempt("packet_socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close())
attempt("unshare_user", lambda: syscall(libc.unshare(0x10000000)))  # CLONE_NEWUSER
attempt("personality", lambda: syscall(libc.personality(0x0008)))  # READ_IMPLIES_EXEC
print("host_tmp_marker=" + ("seen" if os.path.exists("/tmp/llmfleet-host-marker") else "hidden"))
print("dev=" + ",".join(sorted(os.listdir("/dev"))))
# Processes of other users this one can see in /proc (the server itself runs as the same user).
others = 0
for entry in os.listdir("/proc"):
    try:
        others += entry.isdigit() and os.stat(f"/proc/{entry}").st_uid != os.getuid()
    except FileNotFoundError:
        pass
print(f"other_users_processes={others}")
print("umask=%04o" % os.umask(0))
