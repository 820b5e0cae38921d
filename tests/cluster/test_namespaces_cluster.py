"""Per-namespace history sizes with Redis (issue #24 item 1): the history
kept in Redis for a channel of namespace ``short:`` holds its namespace's 2
messages, the service's 10 elsewhere, and a page on another process recovers
exactly that."""
import json

ENV = {"SNORKY_PUBSUB_HISTORY_SIZE": "10", "SNORKY_CHAT_HISTORY_SIZE": "10",
       "SNORKY_NAMESPACES": json.dumps({"short": {"history_size": 2}})}


def test_a_namespace_sizes_the_redis_history(cluster, connect):
    a, b = cluster(2, **ENV)
    writer, reader = connect(a), connect(b)
    epochs = {}
    for channel in ("short:feed", "long-feed"):
        epochs[channel] = writer.ok("pubsub", "subscribe", {"channel": channel})["epoch"]
        for i in range(5):
            writer.ok("pubsub", "publish", {"channel": channel, "message": i})

    def recover(channel, offset):
        reader.notifications.clear()
        answer = reader.call("pubsub", "subscribe", {"channel": channel, "since": {
            "offset": offset, "epoch": epochs[channel]}})
        reader.ok("pubsub", "unsubscribe", {"channel": channel})
        return answer["data"]["recovered"], [m["message"]["message"] for m in reader.notifications]
    assert recover("short:feed", 0) == (False, [])
    assert recover("short:feed", 3) == (True, [3, 4])
    assert recover("long-feed", 0) == (True, [0, 1, 2, 3, 4])
