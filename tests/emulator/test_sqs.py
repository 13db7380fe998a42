"""The emulator's patch of moto's SQS (gk_sqs.py): the retention rule it rewrote, kept as moto and SQS have it.
In-process, on moto's backend, so that a message's age can be set without waiting."""

import gk_sqs  # noqa: F401 - its patch of moto
from moto.sqs.models import sqs_backends

ACCOUNT, REGION = "123456789012", "us-east-1"


def test_a_message_past_its_queues_retention_period_is_not_received_and_a_younger_one_is():
    backend = sqs_backends[ACCOUNT][REGION]
    backend.create_queue("gk-retention", MessageRetentionPeriod="60")
    old = backend.send_message("gk-retention", "old")
    old.sent_timestamp -= 61_000  # sent 61 s ago, past the queue's 60 s
    young = backend.send_message("gk-retention", "young")
    young.sent_timestamp -= 59_000  # 59 s ago, within it
    got = [m.body for m in backend.receive_message("gk-retention", 10, 0, 30)]
    # moto stops at the first expired message it meets (the order is the queue's): the young one follows.
    got += [m.body for m in backend.receive_message("gk-retention", 10, 0, 30)]
    assert "old" not in got
    assert got == ["young"]


def test_a_message_is_received_only_once_its_delay_is_over_and_again_only_after_its_visibility_timeout():
    backend = sqs_backends[ACCOUNT][REGION]
    backend.create_queue("gk-visible")
    delayed = backend.send_message("gk-visible", "delayed", delay_seconds=900)
    backend.send_message("gk-visible", "now")
    assert [m.body for m in backend.receive_message("gk-visible", 10, 0, 30)] == ["now"]
    # In flight for its 30 s: not received again.
    assert backend.receive_message("gk-visible", 10, 0, 30) == []
    delayed.delayed_until -= 901_000  # its delay is over
    assert [m.body for m in backend.receive_message("gk-visible", 10, 0, 30)] == ["delayed"]
    for m in list(backend.get_queue("gk-visible")._messages):
        m.visible_at -= 31_000  # both visibility timeouts have passed
    assert sorted(m.body for m in backend.receive_message("gk-visible", 10, 0, 30)) == ["delayed", "now"]


def test_a_delete_with_an_older_receipt_handle_deletes_nothing_and_the_latest_deletes():
    # SQS API reference, DeleteMessage: "If you use an old ReceiptHandle, the request will succeed, but the
    # message might not be deleted." The emulator keeps it.
    backend = sqs_backends[ACCOUNT][REGION]
    backend.create_queue("gk-handles")
    backend.send_message("gk-handles", "m")
    first = backend.receive_message("gk-handles", 1, 0, 30)[0].receipt_handle
    backend.change_message_visibility("gk-handles", first, 0)  # its visibility over: received again
    latest = backend.receive_message("gk-handles", 1, 0, 30)[0].receipt_handle
    assert latest != first
    backend.delete_message("gk-handles", first)  # succeeds, deletes nothing
    assert [m.body for m in backend.get_queue("gk-handles")._messages] == ["m"]
    backend.delete_message("gk-handles", latest)
    assert backend.get_queue("gk-handles")._messages == []
    backend.delete_message("gk-handles", latest)  # deleting again is no error, as moto had it


def test_a_receive_and_a_visibility_change_wait_for_the_queues_lock_and_a_long_poll_releases_it():
    # Another request thread inside the queue (holding its lock) is waited for, so a receive never iterates the
    # in-flight set while it changes; a long poll waiting for messages lets a send in.
    import threading

    backend = sqs_backends[ACCOUNT][REGION]
    backend.create_queue("gk-locked")
    backend.send_message("gk-locked", "m")
    queue = backend.get_queue("gk-locked")
    got: list = []
    with queue._messages_lock:
        receiver = threading.Thread(target=lambda: got.extend(backend.receive_message("gk-locked", 1, 0, 30)))
        receiver.start()
        receiver.join(0.3)
        assert receiver.is_alive() and got == [], "the receive waits while another thread holds the queue"
    receiver.join(5)
    assert [m.body for m in got] == ["m"]
    handle = got[0].receipt_handle
    with queue._messages_lock:
        changer = threading.Thread(target=lambda: backend.change_message_visibility("gk-locked", handle, 0))
        changer.start()
        changer.join(0.3)
        assert changer.is_alive(), "the visibility change waits too"
    changer.join(5)
    # A long poll on the emptied queue holds the lock only between waits: a send gets in and is received.
    backend.receive_message("gk-locked", 1, 0, 30)
    polled: list = []
    poller = threading.Thread(target=lambda: polled.extend(backend.receive_message("gk-locked", 1, 5, 30)))
    poller.start()
    backend.send_message("gk-locked", "later")
    poller.join(5)
    assert [m.body for m in polled] == ["later"]
