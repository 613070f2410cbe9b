"""moto's server, with sending and receiving made independent of a queue's depth.

moto 5.2.5 reads `queue.attributes` on every message it sends (for the
ContentBasedDeduplication flag) and on every message it receives (three times,
for MessageRetentionPeriod). That property computes every attribute, the three
approximate message counts included, each a pass over every message in the
queue with two clock reads per message. So each message sent or received costs
O(depth), and draining or filling a queue of n messages costs O(n^2).

Profiled with py-spy: a burst like daily-collection's benchmark (1,000 messages
into one queue in batches of ten) spent over 90 % of moto's busy time there, at
58-99 messages a second; ten pollers draining 1,000 messages spent 85 % there,
at 11 messages a second. Real SQS does not slow down as a queue fills, so the
local stack would measure moto rather than our functions.

The fix: while a request thread is inside moto's SendMessage or ReceiveMessage
(the backend methods, which every batch call goes through), the three counts
read 0 instead of being counted. Those paths never read them (they read
attributes for one flag or one period, which stay moto's own); the check below
refuses to start on a moto whose paths mention the counts, so an upgrade cannot
apply this blindly. Outside those paths, GetQueueAttributes included, every
count is moto's.

Usage: python moto_server.py -H 127.0.0.1 -p 5000 (moto_server's arguments).
"""

import inspect
import sys
import threading

from moto import __version__ as moto_version
from moto.server import main
from moto.sqs.models import Queue, SQSBackend

COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)
# The methods that read `queue.attributes` per message, and everything on their
# way to it that reads queue attributes.
SCOPED = (SQSBackend.send_message, SQSBackend.receive_message)
READERS = SCOPED + (
    SQSBackend._validate_message,
    SQSBackend.is_message_valid_based_on_retention_period,
    Queue.add_message,
)

_path = threading.local()


def _inside(method):
    def run(*args, **kwargs):
        _path.depth = getattr(_path, "depth", 0) + 1
        try:
            return method(*args, **kwargs)
        finally:
            _path.depth -= 1

    return run


def _uncounted_inside(count):
    def read(queue):
        return 0 if getattr(_path, "depth", 0) else count.fget(queue)

    return property(read)


def _paths_never_read_the_counts():
    words = COUNTS + ("ApproximateNumberOfMessages",)
    return not any(word in inspect.getsource(f) for f in READERS for word in words)


if __name__ == "__main__":
    if not _paths_never_read_the_counts():
        sys.exit(f"moto {moto_version}: its send or receive path reads the message counts; "
                 "review infra/local/moto_server.py")
    for name in COUNTS:
        setattr(Queue, name, _uncounted_inside(getattr(Queue, name)))
    for method in SCOPED:
        setattr(SQSBackend, method.__name__, _inside(method))
    main()
