"""Loads a config file exactly as monasca-persister 9.0.0 does (oslo.log options registered,
CONF(...) with project 'monasca', then the persister's own options) and prints, as JSON, the
resolved value of every option of the groups the Rust persister maps. Exit 2 (message on
stderr, JSON {"error": ...} on stdout) when oslo.config refuses the file or a value.

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


def logging_outcome(CONF):
    """Sets oslo.log up as the persister does (log.setup), with file handlers that open
    nothing, and returns the root logger's level and the file its first file handler
    writes to (absolute, as logging keeps it)."""
    logging.FileHandler._open = lambda self: open("/dev/null", "a")
    # As the console script /usr/bin/monasca-persister would be named.
    handlers._get_binary_name = lambda: "monasca-persister"
    log.setup(CONF, "monasca-persister")
    root = logging.getLogger()
    files = [h.baseFilename for h in root.handlers if hasattr(h, "baseFilename")]
    return {"level": logging.getLevelName(root.level), "file": files[0] if files else None}


def main(argv):
    CONF = conf.CONF
    try:
        # As monasca_persister.config.parse_args, minus the default file search.
        log.set_defaults()
        log.register_options(CONF)
        CONF(args=argv, project="monasca", prog="monasca-persister",
             default_config_files=[])
        conf.register_opts()
        out = {}
        for group in GROUPS:
            if group == "DEFAULT":
                names = DEFAULT_OPTS
                ns = CONF
            else:
                ns = getattr(CONF, group)
                names = sorted(CONF[group].keys())
            out[group] = {}
            for name in names:
                # Values are checked when read: read them all, as the daemon would.
                out[group][name] = getattr(ns, name)
        out["logging"] = logging_outcome(CONF)
    except Exception as e:  # oslo.config raises many kinds; all mean "refused".
        msg = "%s: %s" % (type(e).__name__, e)
        print(json.dumps({"error": msg}))
        print(msg, file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
