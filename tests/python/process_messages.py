"""The Python persister's own metric conversion, for tests/python_messages.rs.

Reads JSON metric messages (one per line) from stdin and prints, for each, the line protocol
monasca-persister 9.0.0's MetricInfluxdbRepository.process_message returns, or
`ERROR <exception type>: <message>` when it raises. One output line per input line: a line
that would contain a raw newline (the reference does not escape newlines in tags, so such a
line would be two lines to InfluxDB) is printed as `SPLIT <line, newlines shown as \\n>`.

Run with the virtualenv's python (scripts/python-reference). The `influxdb` client the
repository module imports is only used for writing, which this never does, and is not among
the pinned requirements: a stub stands in for it.
"""
import sys
import types

sys.modules.setdefault("influxdb", types.ModuleType("influxdb"))

from monasca_persister.repositories.influxdb.metrics_repository import (  # noqa: E402
    MetricInfluxdbRepository,
)


class Message:
    """The one method of a Kafka message process_message calls."""

    def __init__(self, value):
        self._value = value

    def value(self):
        return self._value


def main():
    for raw in sys.stdin.buffer:
        raw = raw.rstrip(b"\n")
        try:
            line, _tenant = MetricInfluxdbRepository.process_message(Message(raw))
        except Exception as e:  # noqa: BLE001 - every failure is an outcome to compare
            out = "ERROR %s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        else:
            out = "SPLIT " + line.replace("\n", "\\n") if "\n" in line else line
        sys.stdout.write(out + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
