"""SQS for the local AWS: moto's ReceiveMessage made linear in the queue's depth (what it answers unchanged), a
delete with an older receipt handle that deletes nothing, as the DeleteMessage reference allows, and a delete,
a receive and a visibility change that hold the queue's lock (moto's delete lost a message added by another
thread meanwhile; its receive failed with HTTP 500, "Set changed size during iteration", when another
consumer's receive or delete changed the in-flight set under it).

moto 5.2.1 checks each message it is about to return against the queue's retention period by calling
`get_queue_attributes`, which computes every attribute of the queue, among them the approximate counts, each a
pass over all its messages. A receive of 10 from a queue 1,000 deep took about 0.8 s on the benchmark machine,
where SQS answers in milliseconds, so an event source stood in for could not fill a batch of 1,000 within its
2 s window and the benchmarks timed the emulator. The check below reads the retention period alone and keeps
moto's rule as it is: a message whose `SentTimestamp` plus the queue's `MessageRetentionPeriod` is not in the
future is not returned (SQS API reference, SetQueueAttributes: MessageRetentionPeriod, "the length of time,
in seconds, for which Amazon SQS retains a message"; SQS deletes such messages). And the list of visible
messages each receive starts from reads the clock once, not twice per message (a message is visible once its
visibility timeout has passed and its delay is over, as moto's `Message.visible` and `delayed` say).
"""

from __future__ import annotations

from moto.core.utils import unix_time, unix_time_millis
from moto.sqs.models import Queue, SQSBackend


def _retained(self: SQSBackend, queue_name: str, message) -> bool:
    queue = self.get_queue(queue_name)
    return float(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _retained


def _visible_messages(self: Queue) -> list:
    now = unix_time_millis()
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


Queue.messages = property(_visible_messages)


# SQS API reference, DeleteMessage: "If you receive the same message more than once, you will get a different
# ReceiptHandle each time. When you want to delete a message using the DeleteMessage action, you must use the
# ReceiptHandle from the most recent time you received the message. If you use an old ReceiptHandle, the
# request will succeed, but the message might not be deleted." moto deleted a message with any receipt handle
# it ever had, so a consumer whose visibility timeout ran out, and whose message another consumer had received
# since, still deleted it. Of the two answers the reference allows, the emulator gives the one that keeps the
# message: such a delete succeeds and deletes nothing, and the message stays with the consumer holding its
# latest handle (the code must be right under either).
_orig_delete_message = Queue.delete_message


def _delete_message(self: Queue, receipt_handle: str) -> None:
    # Under the queue's lock, which moto's add_message holds and its delete_message did not: moto rebuilt the
    # message list unlocked, so a message another thread added meanwhile (a delivery, on the emulator's
    # delivery thread) was lost.
    with self._messages_lock:
        for message in self._messages:
            if message.receipt_handle != receipt_handle and message.had_receipt_handle(receipt_handle):
                return None  # an older receipt of a message received again since: nothing deleted
        return _orig_delete_message(self, receipt_handle)


Queue.delete_message = _delete_message


# Consumers of one queue call at once: SQS serves any number of them ("Standard queues support a nearly unlimited
# number of API calls per second, per API action", SQS developer guide, "Amazon SQS standard queues"), and
# never answers a receive with a 500 for it. moto's receive iterated the queue's in-flight set while another
# request thread's receive, delete or visibility change altered it (RuntimeError: Set changed size during
# iteration, seen in the benchmark's two concurrent pollers). Each now holds the queue's lock, which moto's
# add_message holds; a long poll's wait releases it (the lock is the queue's Condition, reentrant).
def _holding_the_queue(method):
    """`method` of the backend, called with its queue's lock held."""

    def held(self: SQSBackend, queue_name: str, *args, **kwargs):
        with self.get_queue(queue_name)._messages_lock:
            return method(self, queue_name, *args, **kwargs)

    return held


SQSBackend.receive_message = _holding_the_queue(SQSBackend.receive_message)
SQSBackend.change_message_visibility = _holding_the_queue(SQSBackend.change_message_visibility)
