"""Loads a config file exactly as monasca-persister 9.0.0 does (oslo.log options registered,
CONF(...) with project 'monasca', then the persister's own options) and prints, as JSON, the
resolved value of every option of the groups the Rust persister maps. Exit 2 (message on
stderr, JSON {"error": ...} on stdout) when oslo.config or oslo.log refuses the file or a
value, with the error types they refuse with (see `read`, `logging_outcome` and `main`); any
other error is this script's own and exits 1 with a traceback, which fails the test.

Usage: oslo_dump.py [--config-file F]... [--config-dir D]...
Run with the interpreter scripts/python-reference prints.
"""
import json
import logging
import logging.handlers
import sys

from oslo_config import cfg
from oslo_log import handlers
from oslo_log import log

from monasca_persister import conf

GROUPS = ["DEFAULT", "kafka", "kafka_metrics", "kafka_alarm_history", "influxdb",
          "repositories", "kafka_events"]
DEFAULT_OPTS = ["debug", "log_dir", "log_file", "log_config_append"]


class Refused(Exception):
    """oslo.config or oslo.log refused the file or a value (the daemon would not start)."""


def logging_outcome(CONF):
    """Sets oslo.log up as the persister does (log.setup), with file handlers that open
    nothing, and returns the root logger's level and the file its first file handler
    writes to (absolute, as logging keeps it)."""
    logging.FileHandler._open = lambda self: open("/dev/null", "a")
    # As the console script /usr/bin/monasca-persister would be named.
    handlers._get_binary_name = lambda: "monasca-persister"
    try:
        log.setup(CONF, "monasca-persister")
    except log.LogConfigError as e:
        # log_config_append names a file logging cannot read.
        raise Refused(e) from e
    except ValueError as e:
        # Raised by logging.config while applying log_config_append's file (an unknown level
        # name, say): oslo.log does not wrap it, so the daemon would die with it.
        raise Refused(e) from e
    root = logging.getLogger()
    files = [h.baseFilename for h in root.handlers if hasattr(h, "baseFilename")]
    return {"level": logging.getLevelName(root.level), "file": files[0] if files else None}


def read(ns, name):
    """An option's value, checked and substituted as the daemon reads it."""
    try:
        return getattr(ns, name)
    except cfg.Error as e:
        # A value its type refuses (ConfigFileValueError, ConfigSourceValueError), a
        # $reference to an unknown option or group (NoSuchOptError, NoSuchGroupError,
        # TemplateSubstitutionError).
        raise Refused(e) from e
    except RecursionError as e:
        # A $reference cycle: oslo.config substitutes until Python's recursion limit stops it.
        raise Refused(e) from e


def main(argv):
    CONF = conf.CONF
    # As monasca_persister.config.parse_args, minus the default file search.
    log.set_defaults()
    log.register_options(CONF)
    try:
        CONF(args=argv, project="monasca", prog="monasca-persister",
             default_config_files=[])
    except cfg.Error as e:
        # The file cannot be parsed (ConfigFileParseError) or the arguments are refused.
        return refused(Refused(e))
    conf.register_opts()
    # The options to read, found before any value is read: a name this script gets wrong
    # is its own error (exit 1, traceback), never a refusal.
    missing = [n for n in DEFAULT_OPTS if n not in CONF]
    if missing:
        raise RuntimeError("oslo_dump.py: no options %s in [DEFAULT]" % missing)
    wanted = []
    for group in GROUPS:
        if group == "DEFAULT":
            wanted.append((group, CONF, DEFAULT_OPTS))
        else:
            wanted.append((group, getattr(CONF, group), sorted(CONF[group].keys())))
    out = {}
    try:
        for group, ns, names in wanted:
            # Values are checked when read: read them all, as the daemon would.
            out[group] = {name: read(ns, name) for name in names}
        out["logging"] = logging_outcome(CONF)
    except Refused as e:
        return refused(e)
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


def refused(e):
    """Reports a refusal: exit 2, the message on stderr and as JSON on stdout. Any other
    exception is a bug here and leaves with Python's exit 1 and its traceback."""
    cause = e.__cause__ or e
    msg = "%s: %s" % (type(cause).__name__, cause)
    print(json.dumps({"error": msg}))
    print(msg, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
