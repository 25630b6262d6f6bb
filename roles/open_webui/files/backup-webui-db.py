"""Copy Open WebUI's SQLite database with SQLite's online backup API, then keep the newest N copies.

Usage: backup-webui-db.py DB BACKUP_DIR LABEL KEEP OWNER GROUP
Prints the new backup's path, or nothing when there is no database yet. Run by the open_webui
role with the running version's Python before a different version is installed.
"""

import datetime
import grp
import os
import pwd
import sqlite3
import sys


def main(db: str, backup_dir: str, label: str, keep: str, owner: str, group: str) -> None:
    if not os.path.isfile(db):
        return
    uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    os.chown(backup_dir, uid, gid)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = os.path.join(backup_dir, f"webui-{label}-{stamp}.db")
    partial = target + ".partial"
    old_umask = os.umask(0o077)
    try:
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        copy = sqlite3.connect(partial)
        with copy:
            source.backup(copy)
        copy.close()
        source.close()
    finally:
        os.umask(old_umask)
    os.chown(partial, uid, gid)
    os.replace(partial, target)
    backups = sorted(name for name in os.listdir(backup_dir) if name.startswith("webui-") and name.endswith(".db"))
    backups.sort(key=lambda name: os.path.getmtime(os.path.join(backup_dir, name)))
    for name in backups[: max(len(backups) - int(keep), 0)]:
        os.remove(os.path.join(backup_dir, name))
    print(target)


if __name__ == "__main__":
    main(*sys.argv[1:7])
